"""What bench/bench_fanout.py runs on: a config of http_push channels, a store of pending rows, the daemon
as a process of its own, the store's figures read with the standard library, and py-spy's samples summed."""

from __future__ import annotations

import os
import platform
import sqlite3
import statistics
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from publisher.sandbox.corpus import ALL_CHANNELS, COUNTS  # noqa: E402
from publisher.store.db import Store  # noqa: E402
from publisher.store.schema import deliveries, items, revisions  # noqa: E402

CHANNELS = ALL_CHANNELS  # the corpus names these in some items' own routing, so the four keep those names
DONE = ("sent", "live")
BODY = ("为深入贯彻落实全市安全生产工作部署，进一步加强危险化学品领域安全监管，有效防范和遏制各类生产安全事故。"
        "检查共涉及企业42家，发现并督促整改隐患117项，责令停产整顿3家。\n\n"
        "各单位要切实落实企业安全生产主体责任，严格执行各项规章制度，确保责任到人、措施到位。") * 2


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    ram = next((int(line.split()[1]) // 1024 for line in Path("/proc/meminfo").read_text().splitlines()
                if line.startswith("MemTotal")), 0)
    return {"nproc": os.cpu_count(), "cpu": cpu, "ram_mib": ram, "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version, "loadavg_at_start": [round(x, 2) for x in os.getloadavg()]}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(work: Path, urls: dict[str, str], *, concurrency: int, timeout: str = "10s",
                 store_url: str = "sqlite:///var/publisher.db") -> tuple[Path, int]:
    """Every category routed to the four http_push channels with no review; read-backs a month out, so a
    row's work in the run is its send alone (verification made trivial: the figures use sent_at)."""
    port = free_port()
    data = {
        "store": {"url": store_url},
        "queue": {"path": "queue", "rescan": "30s", "settle": "1ms"},
        "web": {"listen": f"127.0.0.1:{port}"},
        "sandbox": {"enabled": False},
        "locale": "en",
        "categories": {key: {"name": key, "review": [], "channels": list(urls)} for key in COUNTS},
        "channels": {name: {"type": "http_push", "url": f"{url}/ch/{name}", "concurrency": concurrency,
                            "timeout": timeout, "verify_after": "30d", "sla": "1d"} for name, url in urls.items()},
    }
    (work / "queue" / "inbox").mkdir(parents=True, exist_ok=True)
    config = work / "config.yaml"
    config.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return config, port


def build_pending(db: Path | str, channels: list[str], n_revisions: int, *, chunk: int = 5000) -> int:
    """`n_revisions` approved revisions, each with a pending row on every channel, in bulk inserts through
    the project's schema (a migrated store); returns the number of rows. `db`: a SQLite file, or a store
    URL (PostgreSQL: an empty database, migrated here as the daemon would)."""
    store = Store.open(db if isinstance(db, str) else f"sqlite:///{db}")
    now = datetime.now(UTC)
    try:
        for start in range(0, n_revisions, chunk):
            stop = min(n_revisions, start + chunk)
            ids = [f"fanout-{i:07d}" for i in range(start, stop)]
            with store.tx() as conn:
                conn.execute(items.insert(), [{"id": item_id, "category": "updates", "title": f"扇出测试 {item_id}",
                                               "current_revision": 1, "retracted": False, "created_at": now,
                                               "updated_at": now} for item_id in ids])
                conn.execute(revisions.insert(), [
                    {"id": i + 1, "item_id": item_id, "number": 1, "state": "approved", "title": f"扇出测试 {item_id}",
                     "category": "updates", "body": BODY, "channels": [], "attachments": [], "retract": False,
                     "findings": [], "created_at": now, "approved_at": now}
                    for i, item_id in zip(range(start, stop), ids, strict=True)])
                conn.execute(deliveries.insert(), [
                    {"revision_id": i + 1, "item_id": item_id, "channel": ch, "state": "pending", "retract": False,
                     "due_at": now, "next_attempt_at": now, "attempts": 0, "verify_attempts": 0,
                     "created_at": now, "updated_at": now}
                    for i, item_id in zip(range(start, stop), ids, strict=True) for ch in channels])
    finally:
        store.close()
    return n_revisions * len(channels)


class Daemon:
    """`publisher run` in its own process (as deployed), its output in work/daemon.log."""

    def __init__(self, config: Path, port: int) -> None:
        self.log = open(config.parent / "daemon.log", "wb")  # noqa: SIM115  # closed in stop()
        self.proc = subprocess.Popen([sys.executable, "-m", "publisher", "run", "--config", str(config)],
                                     stdout=self.log, stderr=subprocess.STDOUT, cwd=config.parent)
        self.port = port

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, timeout: float = 60) -> None:
        from bench_pipeline import _wait_ready  # bench/ is on the path: the benches run as scripts

        _wait_ready(self.port, self.proc, timeout, log=self.log.name)

    def children(self) -> list[int]:
        try:
            return [int(p) for p in Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()]
        except OSError:
            return []

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.log.close()


def cpu_seconds(pid: int) -> float:
    """The process's user + system CPU time so far (/proc/PID/stat), 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def status_kib(pid: int, key: str) -> int:
    """A figure of /proc/PID/status in KiB (VmHWM: the peak resident set; VmRSS: the present one)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _epoch(column: str) -> str:
    return f"(julianday({column}) - 2440587.5) * 86400.0"


class StoreReader:
    """The store read with sqlite3 alone (WAL: never in the daemon's way), for progress and figures."""

    def __init__(self, db: Path) -> None:
        self.db = db

    def _rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=30) as conn:
            return conn.execute(sql, args).fetchall()

    def counts(self) -> dict[str, Counter[str]]:
        out: dict[str, Counter[str]] = {}
        try:
            for ch, st, n in self._rows("SELECT channel, state, count(*) FROM deliveries GROUP BY channel, state"):
                out.setdefault(ch, Counter())[st] = n
        except sqlite3.OperationalError:  # not created yet, or locked for a moment
            pass
        return out

    def sends(self) -> list[tuple[str, float, float]]:
        """(channel, sent_at as epoch seconds, sent_at − due_at in seconds) of every sent row."""
        return [(ch, at, lag) for ch, at, lag in self._rows(
            f"SELECT channel, {_epoch('sent_at')}, (julianday(sent_at) - julianday(due_at)) * 86400.0 "
            "FROM deliveries WHERE state IN ('sent', 'live')")]

    def last_revision_at(self) -> float | None:
        rows = self._rows(f"SELECT max({_epoch('created_at')}) FROM revisions")
        return rows[0][0] if rows else None


def p95(values: list[float]) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=20, method="inclusive")[-1]


def profile(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes] | None:
    """py-spy sampling the daemon for `seconds` (None when py-spy is not installed)."""
    exe = Path(sys.executable).parent / "py-spy"
    cmd = str(exe) if exe.exists() else "py-spy"
    try:
        return subprocess.Popen([cmd, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))),
                                 "--rate", "100", "--nonblocking", "-f", "raw", "-o", str(out)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except FileNotFoundError:
        return None


def summarize_profile(raw: Path, top: int = 12) -> dict[str, Any]:
    """py-spy's raw stacks (busy threads only, its default) summed: by the frames of the code that does
    the work (inclusive) and by the innermost frame (self)."""
    inclusive: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = [f.rsplit(":", 1)[0] + ")" if ":" in f else f for f in stack.split(";")]
        total += n
        leaf[frames[-1]] += n
        for f in set(frames):
            inclusive[f] += n

    def share(c: Counter[str], keep: Any) -> list[str]:
        return [f"{100 * n / total:.0f}% {f}" for f, n in c.most_common() if keep(f)][:top] if total else []
    ours = ("publisher/", "channels/", "sqlalchemy/", "httpx/", "httpcore/", "jinja2/", "markdown", "structlog/",
            "sqlite3", "json/")
    return {"samples": total,
            "inclusive": share(inclusive, lambda f: any(p in f for p in ours) and "_run_once" not in f),
            "self": share(leaf, lambda f: True)}
