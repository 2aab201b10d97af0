"""Benchmark: `publisher lag` over a store with one million deliveries (target: answer in ≤ 300 ms).

    python bench/bench_lag.py                   # builds var/bench/lag.db once (about a minute), then times
    python bench/bench_lag.py --rebuild --runs 9
    python bench/bench_lag.py --url postgresql+psycopg://localhost/bench   # the same on PostgreSQL

The store holds one bureau-network year: ~290 000 revisions routed by the shipped config's categories
to the four channels (1 000 000 delivery rows), due evenly over the 365 days before the build. Lags are
drawn per channel (bureau_site seconds, city_portal minutes to hours, microblog up to a few hours behind
its rate limit); 0.5 % of rows are not live (failed, retrying, manual, sent, pending), 1 % superseded,
and about a hundred revisions of the last days still wait in review
(their documents dated up to 40 days back, so some legal deadlines are near or past). It times, each as the median of --runs:
  - report:              publisher.lag.build_report in a warm process (the query work alone);
  - daemon up:           `publisher lag` (table, then --json) as a fresh process while `publisher run`
                         serves a copy of the store: what an admin waits for on the server;
  - --store:             the same, reading the store itself (no daemon, or `--store`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import _store  # noqa: E402  (bench/, beside this script)

from publisher.config.settings import load_config  # noqa: E402
from publisher.lag.report import build_report  # noqa: E402
from publisher.store.db import Store  # noqa: E402
from publisher.store.schema import deliveries  # noqa: E402

TARGET = 1_000_000


def build(url: str, config_path: Path, now: datetime, seed: int = 7) -> None:
    """One bureau-network year of TARGET deliveries (bench/_store.py, whose defaults are this store)."""
    _store.build(url, config_path, now, target=TARGET, span=timedelta(days=365), seed=seed)


def write_config(workdir: Path, url: str, **sections: dict[str, Any]) -> Path:
    data = yaml.safe_load((ROOT / "publisher" / "config" / "default.yaml").read_text(encoding="utf-8"))
    data["store"] = {"url": url}
    data["sandbox"] = {"enabled": False}
    data.update(sections)
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def median_ms(fn: Callable[[], object], runs: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", type=Path, default=ROOT / "var" / "bench")
    ap.add_argument("--url", help="store URL (default: SQLite in --dir)")
    ap.add_argument("--rebuild", action="store_true")
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--settle", type=float, default=180.0,
                    help="at most this many seconds for the daemon to go quiet before the timing starts")
    args = ap.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    db = args.dir / "lag.db"
    url = args.url or f"sqlite:///{db}"
    config_path = write_config(args.dir, url)
    store = Store.open(url)
    with store.read() as conn:
        have = conn.execute(sa.select(sa.func.count()).select_from(deliveries)).scalar_one()
    store.close()
    if args.rebuild or have < TARGET:
        if args.url is None and db.exists():
            for p in args.dir.glob("lag.db*"):
                p.unlink()
        elif have:
            sys.exit("the store at --url is not empty; empty it first")
        build(url, config_path, datetime.now(UTC))

    store = Store.open(url)  # brings an older bench store to the newest schema
    store.analyze()  # as the daemon does at start and every few hours
    store.close()
    config = load_config(config_path)
    store = Store.open(url, migrate=False)
    now = datetime.now(UTC)
    build_report(store, config, now)  # warm the page cache, as a running system has it
    report_ms, report_all = median_ms(lambda: build_report(store, config, now), args.runs)
    report = build_report(store, config, now)
    store.close()

    publisher = str(Path(sys.executable).with_name("publisher"))  # the console script an admin types
    if installed_editable():
        print("note: this publisher is an editable install (pip install -e), whose import hook adds ~30-50 ms to "
              "every start; a server runs `pip install .` (see docs/BENCHMARKS.md)", flush=True)

    def timed(config: Path, *, table: bool, store: bool) -> tuple[float, list[float]]:
        base = [publisher, "lag", "--config", str(config), *(["--store"] if store else [])]
        answer = json.loads(subprocess.run([*base, "--json"], check=True, capture_output=True, cwd=args.dir).stdout)
        expect = "store" if store else "daemon"
        assert answer["source"] == expect, f"{base}: answered from the {answer['source']}, expected the {expect}"
        cmd = base if table else [*base, "--json"]
        return median_ms(lambda: subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, cwd=args.dir), args.runs)

    figures: dict[str, tuple[float, list[float]]] = {}
    with running_daemon(args, url) as daemon_cfg:
        figures["publisher lag (daemon up)"] = timed(daemon_cfg, table=True, store=False)
        figures["publisher lag --json (daemon up)"] = timed(daemon_cfg, table=False, store=False)
    figures["publisher lag --store"] = timed(config_path, table=True, store=True)
    figures["publisher lag --json --store"] = timed(config_path, table=False, store=True)
    late = sum(ch.late_total for ch in report.channels)
    print(f"store: {url}  deliveries ≥ {TARGET:,}; late now: {late}; at-risk deadlines: {len(report.deadlines)}")
    print(f"{'report (in process)':34} median {report_ms:6.1f} ms  runs {[round(t) for t in report_all]}")
    for name, (ms, runs) in figures.items():
        print(f"{name:34} median {ms:6.1f} ms  runs {[round(t) for t in runs]}")
    up = max(figures["publisher lag (daemon up)"][0], figures["publisher lag --json (daemon up)"][0])
    print("target ≤ 300 ms:", "met" if up <= 300 else "NOT met", f"with the daemon running ({up:.0f} ms);",
          f"reading the store itself: {figures['publisher lag --store'][0]:.0f} ms")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def wait_quiet(pid: int, limit: float, window: float = 3.0, share: float = 0.05) -> float:
    """Seconds until the process used under `share` of one core over `window` seconds (at most `limit`):
    a daemon that has retried its backlog and waits for its next timers, as on a server between bursts."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        before = cpu_seconds(pid)
        time.sleep(window)
        if cpu_seconds(pid) - before < share * window:
            break
    return time.monotonic() - started


def installed_editable() -> bool:
    """Whether the `publisher` being timed is an editable install, whose import hook every start pays for."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        return '"editable": true' in (distribution("publisher").read_text("direct_url.json") or "")
    except PackageNotFoundError:
        return False


@contextlib.contextmanager
def running_daemon(args: argparse.Namespace, url: str) -> Iterator[Path]:
    """`publisher run` on a copy of the bench store (SQLite; it would otherwise retry the store's open rows
    into it), its channels unreachable and its web server on a free port; yields its config.yaml.
    On PostgreSQL (--url) it runs on the store itself."""
    work = args.dir / "daemon"
    shutil.rmtree(work, ignore_errors=True)
    (work / "queue" / "inbox").mkdir(parents=True)
    daemon_url = url
    if args.url is None:
        shutil.copyfile(args.dir / "lag.db", work / "lag.db")
        daemon_url = f"sqlite:///{work / 'lag.db'}"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cfg = write_config(work, daemon_url, web={"listen": f"127.0.0.1:{port}"}, queue={"path": str(work / "queue")})
    proc = subprocess.Popen([str(Path(sys.executable).with_name("publisher")), "run", "--config", str(cfg)],
                            cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).read()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit("the daemon did not start; run it by hand to see why") from None
                time.sleep(0.1)
        quiet = wait_quiet(proc.pid, args.settle)  # its first passes over the store's open rows (all due)
        print(f"daemon quiet after {quiet:.0f} s" if quiet < args.settle else
              f"daemon still busy after {args.settle:.0f} s; timing anyway", flush=True)
        yield cfg
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


if __name__ == "__main__":
    main()
