"""Benchmark: the lag surfaces over a decade-deep store while the daemon fans out a corpus.

    python bench/bench_surfaces.py                 # builds var/bench/surfaces/surfaces.db once, then measures
    python bench/bench_surfaces.py --rebuild --runs 11
    python bench/bench_surfaces.py --smoke --dir /tmp/x   # a few hundred rows, seconds (tests/test_bench_smoke_surfaces.py)

Targets: `publisher lag` ≤ 300 ms and `GET /api/lag` ≤ 150 ms (medians) while the daemon dispatches,
and the dispatch rate with the measurement running within 10 % of the rate without it.

The store (bench/_store.py): --deliveries rows over the shipped config's four channels, due evenly from
2015-01-01 to the build; a few per thousand are open (failed, retrying, pending, sent, manual), and
their next attempt is held a month ahead (a backoff after a long outage) so that the daemon leaves them
open for the report to count and list; --stale-reviews revisions still wait in review since their year,
every legal deadline long past. Rebuilt when its shape changes or it is a day old (the 7-day window
would thin out).

The daemon busy: the sandbox (its own process) stands in for the channels; `publisher run` works on a
copy of the store with review chains emptied and the microblog's limit lifted (bench_pipeline.setup), and a
corpus (`publisher corpus --scale`, written aside, then renamed into the inbox at once) fans out. Once
intake is done and sends flow, the bench alternates windows of --window seconds in the order on, off,
off, on, … (so a steady drift of the rate cancels out). In an "on" window it times, in turn, back to back
(--pace: one rotation a pace):
  - `publisher lag`: a fresh process printing the table, as an admin types it; the table asks the daemon
    for `/api/lag?limit=5`, which the daemon serves from the copy it keeps, cut to 5 late rows a channel;
  - `GET /api/lag`: the default report, served from the copy the daemon keeps (rebuilt every 2 s, Age ≤ 5 s);
  - after the windows, `GET /api/lag?since=7d`: the same report built on demand (`at`, `since`, `channel` or a
    limit over 100 do that), shown for comparison; not one of the issue's two surfaces, so not in the windows.
In an "off" window it only waits. The dispatch rate of a window is the corpus deliveries whose
`sent_at` falls in it, per second; the ratio is (on-window sends / on time) / (off-window sends / off time).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import _store  # noqa: E402  (bench/, beside this script)
import bench_lag  # noqa: E402
import bench_pipeline  # noqa: E402

from publisher.sandbox import SandboxProcess  # noqa: E402
from publisher.sandbox.corpus import make_corpus  # noqa: E402
from publisher.store.db import Store  # noqa: E402
from publisher.store.schema import deliveries  # noqa: E402

FIRST_DAY = datetime(2015, 1, 1, tzinfo=UTC)
HOLD_OPEN = timedelta(days=30)
MAX_STORE_AGE = timedelta(days=1)
# the store's open rows: a few per thousand, pending and sent among them (bench_lag's mix has neither)
OPEN_MIX = ((0.002, "failed"), (0.003, "retrying"), (0.0035, "pending"), (0.004, "sent"), (0.005, "manual"),
            (0.015, "superseded"))
IDEAL_LAG_MS, IDEAL_API_MS, IDEAL_RATIO = 300.0, 150.0, 0.90
KINDS = ("publisher lag (table)", "GET /api/lag", "GET /api/lag?since=7d")
WHAT = {KINDS[0]: "fresh process; asks /api/lag?limit=5: the kept copy, cut to 5",
        KINDS[1]: "the copy the daemon keeps (rebuilt every 2 s)",
        KINDS[2]: "built on demand in the report process"}


@dataclass
class Window:
    measuring: bool
    start: float  # time.time(), comparable with the store's sent_at
    end: float = 0.0
    sends: int = 0

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass
class Measurement:
    samples: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in KINDS})
    ages: list[int] = field(default_factory=list)  # the Age header of each GET /api/lag
    windows: list[Window] = field(default_factory=list)


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--dir", type=Path, default=ROOT / "var" / "bench" / "surfaces")
    ap.add_argument("--rebuild", action="store_true")
    ap.add_argument("--runs", type=int, default=11, help="at least this many timings of each surface")
    ap.add_argument("--deliveries", type=int, default=1_000_000)
    ap.add_argument("--stale-reviews", type=int, default=400)
    ap.add_argument("--scale", type=float, default=12.0, help="the corpus dropped while measuring (1 = one bureau-year)")
    ap.add_argument("--window", type=float, default=2.0, help="seconds per on/off window")
    ap.add_argument("--measure", type=float, default=8.0, help="at least this many seconds of on windows")
    ap.add_argument("--pace", type=float, default=0.0,
                    help="seconds from one rotation's start to the next in an on window (0: back to back)")
    ap.add_argument("--smoke", action="store_true", help="a few hundred rows and short windows (CI)")
    args = ap.parse_args()
    if args.smoke:
        args.deliveries, args.stale_reviews, args.scale = 400, 20, 0.05
        args.runs, args.window, args.measure = min(args.runs, 3), 0.5, 1.0
    return args


def ensure_store(args: argparse.Namespace) -> tuple[Path, dict[str, Any]]:
    """The bench store of this shape, built when missing, of another shape, or older than MAX_STORE_AGE."""
    args.dir.mkdir(parents=True, exist_ok=True)
    db, meta_path = args.dir / "surfaces.db", args.dir / "surfaces.json"
    shape = {"deliveries": args.deliveries, "stale_reviews": args.stale_reviews, "first_day": FIRST_DAY.isoformat()}
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    built = datetime.fromisoformat(meta["built"]) if "built" in meta else None
    now = datetime.now(UTC)
    if args.rebuild or not db.exists() or meta.get("shape") != shape or built is None or now - built > MAX_STORE_AGE:
        for p in args.dir.glob("surfaces.db*"):
            p.unlink()
        config = bench_lag.write_config(args.dir, f"sqlite:///{db}")  # the shipped routing, for the builder
        print(f"building {args.deliveries:,} deliveries over {FIRST_DAY.year}-{now.year} in {db} …", flush=True)
        states = _store.build(f"sqlite:///{db}", config, now, target=args.deliveries, span=now - FIRST_DAY,
                              open_mix=OPEN_MIX, recent_reviews=min(1_000, args.deliveries // 20),
                              stale_reviews=args.stale_reviews, hold_open=HOLD_OPEN, progress=not args.smoke)
        meta = {"shape": shape, "built": now.isoformat(), "states": states}
        meta_path.write_text(json.dumps(meta, indent=1))
    return db, meta


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or platform.machine())
    mem_kib = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                       if line.startswith("MemTotal:")))
    return (f"nproc {os.cpu_count()}; CPU {cpu}; RAM {mem_kib / 2**20:.0f} GiB; Python {platform.python_version()}; "
            f"SQLite {sqlite3.sqlite_version}; {datetime.now(UTC):%Y-%m-%d}")


def wait_intake(work: Path, limit: float = 300.0) -> None:
    """Until every dropped file is taken in (none left in the inbox or claimed)."""
    deadline = time.monotonic() + limit
    while any(path.suffix == ".md" for d in ("inbox", ".claimed") for path in (work / "queue" / d).iterdir()):
        if time.monotonic() > deadline:
            raise SystemExit(f"intake did not finish in {limit:.0f} s")
        time.sleep(0.1)


def measure(args: argparse.Namespace, work: Path, config: Path, port: int) -> Measurement:
    """On/off windows (on, off, off, on, …) until every surface is timed --runs times over --measure seconds."""
    publisher = str(Path(sys.executable).with_name("publisher"))
    lag_cmd = [publisher, "lag", "--config", str(config)]
    out = Measurement()
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:

        def get(target: str) -> float:
            t = time.perf_counter()
            response = client.get(target)
            ms = (time.perf_counter() - t) * 1000
            response.raise_for_status()
            if target == "/api/lag":
                out.ages.append(int(response.headers["Age"]))
            return ms

        def rotation() -> None:
            t = time.perf_counter()
            subprocess.run(lag_cmd, check=True, stdout=subprocess.DEVNULL, cwd=work)
            out.samples[KINDS[0]].append((time.perf_counter() - t) * 1000)
            out.samples[KINDS[1]].append(get("/api/lag"))

        def window(measuring: bool, seconds: float) -> float:
            w = Window(measuring, time.time())
            if measuring:
                while True:  # whole rotations: the window ends with the first one that ends past `seconds`
                    began = time.time()
                    rotation()
                    if time.time() - w.start >= seconds:
                        break
                    time.sleep(max(0.0, args.pace - (time.time() - began)))  # --pace: one rotation a pace at most
            else:
                time.sleep(seconds)
            w.end = time.time()
            out.windows.append(w)
            return w.seconds

        pair = 0
        while len(out.samples[KINDS[0]]) < args.runs or sum(w.seconds for w in out.windows if w.measuring) < args.measure:
            if pair % 2 == 0:
                window(False, window(True, args.window))  # the off window as long as the on one it follows
            else:
                window(True, window(False, args.window))
            pair += 1
        # the on-demand build is not one of the surfaces: timed after the windows, outside the ratio
        for _ in range(args.runs):
            out.samples[KINDS[2]].append(get("/api/lag?since=7d"))
    return out


def count_sends(store_url: str, out: Measurement) -> tuple[int, int, float, float]:
    """Fill each window's sends from the corpus rows' sent_at; (corpus rows, sent, first and last send)."""
    store = Store.open(store_url, migrate=False)
    try:
        with store.read() as conn:
            rows = conn.execute(sa.select(deliveries.c.sent_at)
                                .where(deliveries.c.item_id.not_like("bench-%"))).scalars().all()
    finally:
        store.close()
    sent = sorted(at.timestamp() for at in rows if at is not None)
    for w in out.windows:
        w.sends = sum(1 for t in sent if w.start <= t < w.end)
    return len(rows), len(sent), (sent[0] if sent else 0.0), (sent[-1] if sent else 0.0)


def run(args: argparse.Namespace, db: Path) -> tuple[Measurement, dict[str, Any], dict[str, Any]]:
    """The sandbox and the daemon (on a copy of the store) as processes, the corpus dropped, the windows."""
    work = args.dir / "run"
    shutil.rmtree(work, ignore_errors=True)
    with SandboxProcess() as sb:
        config, port = bench_pipeline.setup(work, sb)  # store: work/var/publisher.db
        (work / "var").mkdir()
        shutil.copyfile(db, work / "var" / "publisher.db")
        staging = work / "staging"
        make_corpus(staging, scale=args.scale, sensitive=0)
        (staging / "manifest.json").unlink()
        daemon = bench_pipeline._daemon(config)
        try:
            bench_pipeline._wait_ready(port)
            quiet = bench_lag.wait_quiet(daemon.pid, 120.0, window=1.0)  # its start: ANALYZE, the report process
            answer = subprocess.run([str(Path(sys.executable).with_name("publisher")), "lag", "--config", str(config),
                                     "--json"], check=True, capture_output=True, cwd=work).stdout
            before = json.loads(answer)
            assert before["source"] == "daemon", "publisher lag did not answer from the daemon"
            inbox = work / "queue" / "inbox"
            dropped = time.time()
            for f in sorted(staging.iterdir()):
                os.rename(f, inbox / f.name)
            wait_intake(work)
            time.sleep(args.window)  # the fan-out under way
            out = measure(args, work, config, port)
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(60)
        total, sent, first, last = count_sends(f"sqlite:///{work / 'var' / 'publisher.db'}", out)
    run_info = {"quiet_s": quiet, "intake_s": out.windows[0].start - dropped - args.window, "corpus_rows": total,
                "corpus_sent": sent, "first_send": first, "last_send": last, "dropped": dropped}
    return out, before, run_info


def report(args: argparse.Namespace, meta: dict[str, Any], out: Measurement, before: dict[str, Any],
           info: dict[str, Any], started_load: tuple[float, ...]) -> None:
    states: dict[str, int] = meta["states"]
    open_rows = {s: n for s, n in states.items() if s not in ("live", "superseded", "review")}
    overdue = sum(1 for d in before["deadlines"] if d["status"] == "overdue")
    print(f"\nstore: {sum(n for s, n in states.items() if s != 'review'):,} deliveries due {FIRST_DAY.year}-"
          f"{datetime.fromisoformat(meta['built']).year} over {len(before['channels'])} channels; open "
          f"{sum(open_rows.values()):,} ({', '.join(f'{s} {n:,}' for s, n in sorted(open_rows.items()))}); "
          f"in review {states.get('review', 0):,}; legal deadlines overdue {overdue:,} (report before the drop)")
    print(f"daemon quiet {info['quiet_s']:.0f} s after start; corpus --scale {args.scale}: {info['corpus_rows']:,} "
          f"deliveries, intake {info['intake_s']:.1f} s; {info['corpus_sent']:,} sent by the end, the last "
          f"{info['last_send'] - info['dropped']:.1f} s after the drop")
    on = [w for w in out.windows if w.measuring]
    off = [w for w in out.windows if not w.measuring]
    on_s, off_s = sum(w.seconds for w in on), sum(w.seconds for w in off)
    rate_on = sum(w.sends for w in on) / on_s if on_s else 0.0
    rate_off = sum(w.sends for w in off) / off_s if off_s else 0.0
    ratio = rate_on / rate_off if rate_off else 0.0
    # busy through every window: the corpus still going out well after the last one (not just its last rows)
    busy = info["last_send"] >= out.windows[-1].end + 2 * args.window and info["first_send"] <= out.windows[0].start
    verdict = ("met" if ratio >= IDEAL_RATIO else "NOT met") if busy else "invalid"

    print(f"\n{'figure':24} {'median':>10}  {'n':>3}  {'min-max':>13}  {'ideal':>9}  {'':7} what")
    for kind, ideal in zip(KINDS, (IDEAL_LAG_MS, IDEAL_API_MS, IDEAL_API_MS), strict=True):
        ms = out.samples[kind]
        med = statistics.median(ms)
        print(f"{kind:24} {med:7.1f} ms  {len(ms):3}  {min(ms):5.0f}-{max(ms):<5.0f}ms  {'≤ ' + f'{ideal:.0f} ms':>9}  "
              f"{'met' if med <= ideal else 'NOT met':7} {WHAT[kind]}")
    print(f"{'dispatch rate ratio':24} {ratio:10.2f}  {len(out.windows):3}  {'':13}  {'≥ 0.90':>9}  "
          f"{verdict:7} {rate_on:.1f} deliveries/s over {on_s:.1f} s measuring, {rate_off:.1f}/s over {off_s:.1f} s not")
    print("windows in order (deliveries/s, * measuring): "
          + " ".join(f"{w.sends / w.seconds:.0f}{'*' if w.measuring else ''}" for w in out.windows))
    print(f"GET /api/lag Age headers: {min(out.ages)}-{max(out.ages)} s")
    if not busy:
        print("warning: the corpus was not being sent through every window (sends "
              f"{info['first_send'] - info['dropped']:.1f}-{info['last_send'] - info['dropped']:.1f} s after the drop, "
              f"windows {out.windows[0].start - info['dropped']:.1f}-{out.windows[-1].end - info['dropped']:.1f} s): "
              "the ratio is not of a busy daemon; raise --scale")
    print(f"machine: {machine()}; load average {started_load[0]:.2f} at the start, {os.getloadavg()[0]:.2f} at the end")
    print(f"command: python bench/bench_surfaces.py {' '.join(sys.argv[1:])}")


def main() -> None:
    args = parse_args()
    load = os.getloadavg()
    if bench_lag.installed_editable() and not args.smoke:
        print("note: this publisher is an editable install (pip install -e), whose import hook adds ~30-50 ms to "
              "every start; a server runs `pip install .` (see docs/BENCHMARKS.md)", flush=True)
    db, meta = ensure_store(args)
    out, before, info = run(args, db)
    report(args, meta, out, before, info, load)


if __name__ == "__main__":
    main()
