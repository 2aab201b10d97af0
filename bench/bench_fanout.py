"""Fan-out: the daemon's raw send rate against a bare httpx loop, a ten-year backfill, a hung channel, memory.

    python bench/bench_fanout.py                 # full size (several minutes; run on a quiet machine)
    python bench/bench_fanout.py --smoke         # tiny: checks that every figure is produced
    python bench/bench_fanout.py --only raw,memory

Each part runs `publisher run` (SQLite) as a process of its own against http_push channels whose peer is
bench/_peer.py, a minimal asyncio HTTP/1.1 server in another process. Review chains are empty and the
read-back is a month after the send, so a row's work in the run is its send alone: lags are
sent_at − due_at, read from the store's deliveries table.

  raw        N pending rows (bulk-inserted) over four channels, peers answering at once: the daemon's
             deliveries/s (first to last sent_at) beside the ceiling, a bare `httpx.AsyncClient` loop
             at the same concurrency (4 clients × `concurrency` tasks) against the same peer, in this
             run; target ≥ 0.7 × the ceiling. Beside it, the same loop on the client the daemon's channels
             use (httpx over aiohttp, channels/transport.py): what the daemon's own work costs on top of
             its client. py-spy samples the daemon meanwhile.
  backfill   the ten-year corpus (`make_corpus(scale=10)`, what `publisher corpus DIR --scale 10` writes)
             renamed into the inbox at once, four channels, peers with 20 ms service time, concurrency 8:
             wall (first rename → last sent_at) beside items × 20 ms / 8 on the busiest channel; ≤ 1.15 ×.
             Beside it, in the same run against the same peer: a bare httpx loop at the same concurrency (the
             floor any client reaches here: the peer's and the loopback's own time per call), and the daemon on
             the same number of rows already pending in the store (`backlog`: the sends without the intake).
  isolation  the same with city_portal's peer black-holed (accepts, never answers): the other channels'
             p95 lag beside the backfill's for the same channels; ≤ 1.10 ×.
  memory     ≥ 100 000 pending rows (bulk-inserted), peers answering at once: the daemon's VmHWM (from
             /proc/PID/status, sampled while it works through them) beside 150 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _fanout_kit import (  # noqa: E402
    BODY,
    CHANNELS,
    DONE,
    Daemon,
    StoreReader,
    build_pending,
    cpu_seconds,
    machine,
    p95,
    profile,
    status_kib,
    summarize_profile,
    write_config,
)
from _peer import PeerProcess  # noqa: E402

from channels.transport import channel_client  # noqa: E402
from publisher.sandbox.corpus import make_corpus  # noqa: E402

SIZES = {  # raw: revisions × 4 channels; memory: revisions × 4 channels, seconds watched at most
    "full": {"raw": 2500, "bare": 8000, "scale": 10.0, "memory": 25_000, "memory_s": 90.0, "profile_s": 15.0, "limit_s": 1800.0},
    "smoke": {"raw": 25, "bare": 64, "scale": 0.02, "memory": 300, "memory_s": 4.0, "profile_s": 1.0, "limit_s": 120.0},
}
CONCURRENCY = 8
SERVICE_MS = 20.0
HUNG = "city_portal"  # the channel the isolation run black-holes
OPEN = ("pending", "sending", "retrying", "waiting")


@contextlib.contextmanager
def _workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="bench-fanout-") as tmp:
        yield Path(tmp)


def _wait(what: str, done: Callable[[], bool], limit: float, every: float = 0.25) -> None:
    deadline = time.monotonic() + limit
    while not done():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not done within {limit:.0f} s")
        time.sleep(every)


def _created(peer: PeerProcess) -> int:
    return int(httpx.get(f"{peer.url}/_count", timeout=10).text)


def _ceiling_body() -> bytes:
    """A body the size and shape of what the http_push adapter renders for one of the bench's rows."""
    html = "".join(f"<p>{p}</p>\n" for p in BODY.split("\n\n"))
    return json.dumps({"source_id": "fanout-0000001", "title": "扇出测试 fanout-0000001", "content": html,
                       "column": "updates", "summary": BODY[:120], "publish_time": "2026-12-03 10:00:00"},
                      ensure_ascii=False).encode()


async def bare_httpx(base: str, total: int, concurrency: int, *, daemons_client: bool = False) -> float:
    """Requests/s of a bare loop: one AsyncClient per channel (pooled as the daemon pools them), each with
    `concurrency` tasks POSTing and decoding the JSON answer, `total` requests in all. The ceiling the issue names
    is httpx's own client; `daemons_client` runs the same loop on the client the daemon's channels use
    (channels/transport.py: httpx over aiohttp), the ceiling of what the daemon adds to its own client."""
    body = _ceiling_body()
    headers = {"Accept": "application/json", "Content-Type": "application/json; charset=utf-8"}
    clients = {ch: channel_client(timeout=10, concurrency=concurrency) if daemons_client else
               httpx.AsyncClient(timeout=10, limits=httpx.Limits(max_connections=concurrency * 2,
                                                                  max_keepalive_connections=concurrency))
               for ch in CHANNELS}
    left = total

    async def worker(ch: str) -> None:
        nonlocal left
        while left > 0:
            left -= 1
            resp = await clients[ch].post(f"{base}/ch/{ch}", content=body, headers=headers)
            resp.raise_for_status()
            resp.json()
    try:
        for ch in CHANNELS:  # connections open before the clock starts, as the daemon's are after its first sends
            await asyncio.gather(*(clients[ch].get(f"{base}/a/0") for _ in range(concurrency)))
        started = time.perf_counter()
        await asyncio.gather(*(worker(ch) for ch in CHANNELS for _ in range(concurrency)))
        return total / (time.perf_counter() - started)
    finally:
        for client in clients.values():
            await client.aclose()


def raw(size: dict[str, float]) -> dict[str, Any]:
    with _workdir() as work, PeerProcess() as peer:
        config, port = write_config(work, dict.fromkeys(CHANNELS, peer.url), concurrency=CONCURRENCY)
        db = work / "var" / "publisher.db"
        total = build_pending(db, CHANNELS, int(size["raw"]))
        ceiling = asyncio.run(bare_httpx(peer.url, total, CONCURRENCY))
        same_client = asyncio.run(bare_httpx(peer.url, total, CONCURRENCY, daemons_client=True))
        before = _created(peer)
        reader = StoreReader(db)
        daemon = Daemon(config, port)
        spy = None
        try:
            daemon.wait_ready()
            spy = profile(daemon.pid, size["profile_s"], work / "profile.txt")
            _wait("raw fan-out", lambda: sum(sum(c[s] for s in DONE) for c in reader.counts().values()) >= total,
                  size["limit_s"])
        finally:
            if spy is not None:
                with contextlib.suppress(Exception):
                    spy.wait(size["profile_s"] + 10)
            daemon.stop()
        times = sorted(at for _, at, _ in reader.sends())
        rate = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0
        prof = summarize_profile(work / "profile.txt") if (work / "profile.txt").exists() else None
        if prof is not None and os.environ.get("BENCH_PROFILE_OUT"):  # py-spy's raw stacks, kept for a closer look
            shutil.copy(work / "profile.txt", os.environ["BENCH_PROFILE_OUT"])
        return {"deliveries": total, "channels": len(CHANNELS), "concurrency": CONCURRENCY,
                "daemon_deliveries_per_s": round(rate, 1), "bare_httpx_per_s": round(ceiling, 1),
                "ratio": round(rate / ceiling, 3) if ceiling else 0.0, "target_ratio": 0.7,
                "bare_daemons_client_per_s": round(same_client, 1),
                "ratio_to_daemons_client": round(rate / same_client, 3) if same_client else 0.0,
                "peer_creates": _created(peer) - before, "profile": prof}


def backfill(size: dict[str, float], *, hung: bool) -> dict[str, Any]:
    with _workdir() as work, PeerProcess(delay_ms=SERVICE_MS) as peer, \
            (PeerProcess(blackhole=True) if hung else contextlib.nullcontext()) as hole:
        urls = dict.fromkeys(CHANNELS, peer.url)
        if hole is not None:
            urls[HUNG] = hole.url
        healthy = [ch for ch in CHANNELS if not (hung and ch == HUNG)]
        config, port = write_config(work, urls, concurrency=CONCURRENCY)
        staging = work / "staging"
        n_items = len(make_corpus(staging, scale=size["scale"], sensitive=0)["items"])
        bare = 0.0 if hung else asyncio.run(bare_httpx(peer.url, int(size["bare"]), CONCURRENCY))
        (staging / "manifest.json").unlink()
        reader = StoreReader(work / "var" / "publisher.db")
        inbox = work / "queue" / "inbox"
        daemon = Daemon(config, port)
        try:
            daemon.wait_ready()
            cpu_before = cpu_seconds(daemon.pid)
            started = time.time()
            for f in sorted(staging.iterdir()):
                os.rename(f, inbox / f.name)

            def finished() -> bool:
                counts = reader.counts()
                taken = sum(1 for _ in (work / "queue" / "rejected").glob("*.md"))
                with contextlib.suppress(Exception):
                    taken += reader._rows("SELECT count(*) FROM revisions")[0][0]
                return taken >= n_items and all(ch in counts and not any(counts[ch][s] for s in OPEN)
                                                for ch in healthy)
            _wait("backfill", finished, size["limit_s"], every=0.5)
            last_intake = reader.last_revision_at() or started
            loop_cpu = cpu_seconds(daemon.pid) - cpu_before  # the daemon's process: its event loop, one core at most
        finally:
            daemon.stop()
        counts = reader.counts()
        sends = [s for s in reader.sends() if s[0] in healthy]
        wall = max(at for _, at, _ in sends) - started
        per_channel = {ch: sum(counts.get(ch, {}).values()) for ch in CHANNELS}
        ideal = max(per_channel[ch] for ch in healthy) * SERVICE_MS / 1000 / CONCURRENCY
        lags = {ch: [lag for c, _, lag in sends if c == ch] for ch in healthy}
        rows = sum(per_channel[ch] for ch in healthy)
        return {"items": n_items, "rows_per_channel": per_channel,
                # a client with no bookkeeping at all, against the same peer: the floor of this machine and peer
                "bare_client_per_s": round(bare, 1), "bare_client_s": round(rows / bare, 2) if bare else 0.0,
                "bare_client_ratio": round(rows / bare / ideal, 2) if bare and ideal else 0.0,
                "sent": {ch: len(v) for ch, v in lags.items()}, "wall_s": round(wall, 2),
                "ideal_s": round(ideal, 2), "ratio": round(wall / ideal, 2) if ideal else 0.0, "target_ratio": 1.15,
                "intake_s": round(last_intake - started, 2),
                # the CPU the daemon's own process spent on the run: its event loop cannot finish in less wall time,
                # so loop_cpu_s / ideal_s is the ratio this machine's one loop could reach at best
                "loop_cpu_s": round(loop_cpu, 2), "loop_bound_ratio": round(loop_cpu / ideal, 2) if ideal else 0.0,
                "p95_lag_s": round(p95([x for v in lags.values() for x in v]), 2),
                "p95_lag_by_channel_s": {ch: round(p95(v), 2) for ch, v in lags.items()},
                # the isolation figure compares the channels that stay up: those other than HUNG, in both runs
                "p95_lag_others_s": round(p95([x for ch, v in lags.items() if ch != HUNG for x in v]), 2),
                "hung": HUNG if hung else None,
                "hung_states": dict(counts.get(HUNG, {})) if hung else None}


def backlog(size: dict[str, float], per_channel: int) -> dict[str, Any]:
    """The backfill's sends without its intake: as many rows per channel already pending in the store, the same
    20 ms peer and concurrency; first to last sent_at beside the same ideal."""
    with _workdir() as work, PeerProcess(delay_ms=SERVICE_MS) as peer:
        config, port = write_config(work, dict.fromkeys(CHANNELS, peer.url), concurrency=CONCURRENCY)
        db = work / "var" / "publisher.db"
        total = build_pending(db, CHANNELS, per_channel)
        reader = StoreReader(db)
        daemon = Daemon(config, port)
        try:
            daemon.wait_ready()
            cpu_before = cpu_seconds(daemon.pid)
            _wait("backlog", lambda: sum(sum(c[s] for s in DONE) for c in reader.counts().values()) >= total,
                  size["limit_s"])
            loop_cpu = cpu_seconds(daemon.pid) - cpu_before
        finally:
            daemon.stop()
        times = sorted(at for _, at, _ in reader.sends())
        wall = times[-1] - times[0] if len(times) > 1 else 0.0
        ideal = per_channel * SERVICE_MS / 1000 / CONCURRENCY
        return {"rows": total, "wall_s": round(wall, 2), "ideal_s": round(ideal, 2),
                "ratio": round(wall / ideal, 2) if ideal else 0.0, "deliveries_per_s": round(total / wall, 1) if wall else 0.0,
                "cpu_ms_per_delivery": round(loop_cpu / total * 1000, 3)}


def memory(size: dict[str, float]) -> dict[str, Any]:
    with _workdir() as work, PeerProcess() as peer:
        config, port = write_config(work, dict.fromkeys(CHANNELS, peer.url), concurrency=CONCURRENCY)
        db = work / "var" / "publisher.db"
        total = build_pending(db, CHANNELS, int(size["memory"]))
        reader = StoreReader(db)
        daemon = Daemon(config, port)
        peak = peak_rss = children = 0
        child_peaks: dict[int, int] = {}  # the daemon's helper processes (report, intake, resource tracker): each one's peak
        sent = 0
        try:
            daemon.wait_ready()
            started = time.monotonic()
            polls = 0
            while time.monotonic() - started < size["memory_s"]:
                peak = max(peak, status_kib(daemon.pid, "VmHWM"))
                peak_rss = max(peak_rss, status_kib(daemon.pid, "VmRSS"))
                for pid in daemon.children():
                    child_peaks[pid] = max(child_peaks.get(pid, 0), status_kib(pid, "VmHWM"))
                children = max(children, sum(child_peaks.values()))
                polls += 1
                if polls % 10 == 0:
                    sent = sum(sum(c[s] for s in DONE) for c in reader.counts().values())
                    if sent >= total:
                        break
                time.sleep(0.2)
            sent = sum(sum(c[s] for s in DONE) for c in reader.counts().values())
            peak = max(peak, status_kib(daemon.pid, "VmHWM"))
            watched = time.monotonic() - started
        finally:
            daemon.stop()
        return {"pending_rows": total, "sent_while_watched": sent, "watched_s": round(watched, 1),
                "daemon_vmhwm_mb": round(peak / 1024, 1), "daemon_vmrss_max_mb": round(peak_rss / 1024, 1),
                # the target is the daemon's process; its helpers are separate interpreters (spawned), listed apart
                "helper_processes_vmhwm_mb": sorted(round(kib / 1024, 1) for kib in child_peaks.values()),
                "with_helpers_mb": round((peak + children) / 1024, 1), "target_mb": 150}


def _print_figure(name: str, text: str) -> None:
    print(f"FIGURE {name}: {text}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: every figure, in seconds")
    parser.add_argument("--only", default="raw,backfill,isolation,memory")
    args = parser.parse_args()
    size = SIZES["smoke" if args.smoke else "full"]
    parts = set(args.only.split(","))
    result: dict[str, Any] = {"machine": machine(), "command": " ".join([Path(sys.executable).name, *sys.argv]),
                              "size": "smoke" if args.smoke else "full"}
    print(f"machine: {result['machine']}\ncommand: {result['command']}", flush=True)
    if "raw" in parts:
        r = result["raw"] = raw(size)
        _print_figure("raw", f"{r['daemon_deliveries_per_s']} deliveries/s beside the bare httpx ceiling "
                             f"{r['bare_httpx_per_s']}/s = {r['ratio']} × (ideal ≥ 0.7 ×); the bare loop on the "
                             f"daemon's own client {r['bare_daemons_client_per_s']}/s = {r['ratio_to_daemons_client']} ×")
    if parts & {"backfill", "isolation"}:
        b = result["backfill"] = backfill(size, hung=False)
        k = b["backlog"] = backlog(size, max(b["rows_per_channel"].values()))
        _print_figure("backfill", f"{b['wall_s']} s for {b['items']} items × 4 channels beside the ideal "
                                  f"{b['ideal_s']} s = {b['ratio']} × (ideal ≤ 1.15 ×); the daemon's loop spent "
                                  f"{b['loop_cpu_s']} s of CPU ({b['loop_bound_ratio']} × the ideal); a bare httpx "
                                  f"loop against the same peer {b['bare_client_per_s']}/s = {b['bare_client_ratio']} ×; "
                                  f"the same rows already in the store {k['wall_s']} s = {k['ratio']} ×")
    if "isolation" in parts:
        i = result["isolation"] = backfill(size, hung=True)
        fault, clean = i["p95_lag_others_s"], result["backfill"]["p95_lag_others_s"]
        i["p95_lag_without_fault_s"] = clean
        i["lag_ratio"] = round(fault / clean, 3) if clean else 0.0
        _print_figure("isolation", f"p95 lag of the healthy channels {fault} s with {HUNG} black-holed beside "
                                   f"{clean} s without = {i['lag_ratio']} × (ideal ≤ 1.10 ×)")
    if "memory" in parts:
        m = result["memory"] = memory(size)
        _print_figure("memory", f"daemon VmHWM {m['daemon_vmhwm_mb']} MB with {m['pending_rows']} pending rows "
                                f"beside 150 MB (ideal ≤ 150 MB); its helpers (report, intake, resource tracker) "
                                f"{m['helper_processes_vmhwm_mb']} MB apart")
    result["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(result, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
