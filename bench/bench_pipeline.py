"""Pipeline speed: items/s through the whole fan-out, and drop → first channel request latency.

    python bench/bench_pipeline.py [--scale 1.0] [--drops 40]

Runs the daemon (`publisher run`) and the sandbox (`publisher sandbox`) as separate processes, as in
production where the channels are other machines. Review chains are emptied so that the figures
measure the pipeline, not the reviewers. The microblog's client-side limit is lifted for the same reason.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import sqlalchemy as sa
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from publisher.sandbox import SandboxProcess  # noqa: E402
from publisher.sandbox.corpus import make_corpus  # noqa: E402
from tests.harness import free_port, settings, write_config  # noqa: E402


def _daemon(config: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-m", "publisher", "run", "--config", str(config)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=config.parent)
    if os.environ.get("PROFILE"):  # PROFILE=out.txt: sample the daemon with py-spy for 25 s
        subprocess.Popen(["py-spy", "record", "--pid", str(proc.pid), "--duration", "25", "--rate", "200",
                          "-o", os.environ["PROFILE"], "-f", "raw"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc


def _count(engine: sa.Engine, states: tuple[str, ...]) -> int:
    with engine.connect() as conn:
        q = sa.text("SELECT count(*) FROM deliveries WHERE state IN :states").bindparams(
            sa.bindparam("states", expanding=True))
        return int(conn.execute(q, {"states": list(states)}).scalar() or 0)


def _wait_ready(port: int, proc: subprocess.Popen[bytes] | None = None, timeout: float = 30,
                log: str = "its output") -> None:
    """Until the daemon on `port` answers /healthz; a daemon process that exits meanwhile is an error."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the daemon exited ({proc.returncode}); see {log}")
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).raise_for_status()
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError("daemon did not start")


def setup(work: Path, sb: SandboxProcess) -> tuple[Path, int]:
    port = free_port()
    config = write_config(work, sb, web_port=port, **{"channels.microblog.rate_limit": "100000/h"})
    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    for cat in data["categories"].values():
        cat["review"] = []
    config.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    settings(sb, "weibo", posts_per_hour=1_000_000, calls_per_day=1_000_000, repeat_window_s=0)
    return config, port


def throughput(scale: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp, SandboxProcess() as sb:
        work = Path(tmp)
        config, port = setup(work, sb)
        staging = work / "staging"
        manifest = make_corpus(staging, scale=scale, sensitive=0)
        (staging / "manifest.json").unlink()
        engine = sa.create_engine(f"sqlite:///{work / 'var' / 'publisher.db'}")
        daemon = _daemon(config)
        try:
            _wait_ready(port)
            inbox = work / "queue" / "inbox"
            t0 = time.perf_counter()
            for f in sorted(staging.iterdir()):
                os.rename(f, inbox / f.name)
            expected = None
            while True:
                time.sleep(0.1)
                try:
                    total = _count(engine, ("pending", "sending", "sent", "live", "retrying", "waiting", "failed"))
                    done = _count(engine, ("sent", "live"))
                except sa.exc.OperationalError:
                    continue
                if expected is None and not list(inbox.glob("*.md")) and total:
                    expected = total
                if expected and done >= expected:
                    break
                if time.perf_counter() - t0 > 900:
                    raise RuntimeError("throughput run did not finish in 15 minutes")
            elapsed = time.perf_counter() - t0
        finally:
            daemon.terminate()
            daemon.wait(30)
            engine.dispose()
        items = len(manifest["items"])
        return {"items": items, "deliveries": expected or 0, "seconds": round(elapsed, 2),
                "items_per_s": round(items / elapsed, 1), "deliveries_per_s": round((expected or 0) / elapsed, 1)}


def latency(drops: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp, SandboxProcess() as sb:
        work = Path(tmp)
        config, port = setup(work, sb)
        daemon = _daemon(config)
        inbox = work / "queue" / "inbox"
        samples = []
        try:
            _wait_ready(port)
            for n in range(drops + 3):
                item_id = f"latency-{n:04d}"
                tmpfile = work / f"{item_id}.md"
                tmpfile.write_text(f"---\nid: {item_id}\ntitle: 时延测试{n}\ncategory: updates\n---\n正文。\n",
                                   encoding="utf-8")
                t0 = time.time()
                os.rename(tmpfile, inbox / tmpfile.name)
                first = None
                deadline = time.monotonic() + 10
                while first is None and time.monotonic() < deadline:
                    time.sleep(0.02)
                    for service in ("wordpress", "portal"):
                        for req in httpx.get(f"{sb.base_url}/_sandbox/{service}/requests", timeout=5).json():
                            if item_id in json.dumps(req.get("body"), ensure_ascii=False) + req["query"]:
                                first = req["at"] if first is None else min(first, req["at"])
                if first is None:
                    raise RuntimeError(f"{item_id} never reached a channel")
                if n >= 3:  # the first drops warm the daemon's imports and connections
                    samples.append((first - t0) * 1000)
                httpx.post(f"{sb.base_url}/_sandbox/reset", timeout=5)
                settings(sb, "weibo", posts_per_hour=1_000_000, calls_per_day=1_000_000, repeat_window_s=0)
                time.sleep(0.05)
        finally:
            daemon.terminate()
            daemon.wait(30)
        samples.sort()
        return {"drops": len(samples), "p50_ms": round(statistics.median(samples), 1),
                "p99_ms": round(samples[min(len(samples) - 1, int(len(samples) * 0.99))], 1),
                "max_ms": round(max(samples), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--drops", type=int, default=40)
    args = parser.parse_args()
    result = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                         f"Python {platform.python_version()}"}
    if args.drops:
        result["latency"] = latency(args.drops)
    if args.scale:  # --scale 0: the drop latency alone
        result["throughput"] = throughput(args.scale)
    print(json.dumps(result, indent=1))
    shutil.rmtree(ROOT / "bench" / "__pycache__", ignore_errors=True)


if __name__ == "__main__":
    main()
