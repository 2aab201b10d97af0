"""Several nodes: 1 against 2 daemons on one PostgreSQL store, and 1 node on PostgreSQL against 1 on SQLite.

    python bench/bench_nodes.py                                   # full size (~12 minutes on 2 shared cores)
    python bench/bench_nodes.py --smoke                           # tiny: checks that every figure is produced
    python bench/bench_nodes.py --pg postgresql+psycopg://postgres@127.0.0.1:5432/postgres --db bench_nodes

The PostgreSQL server is --pg's (default: PUBLISHER_TEST_PG's); the bench creates its own database --db
on it for each run (dropped and created again, dropped at the end), never touching the one in the URL.

Each run: N approved revisions with a pending row on each of the four channels, bulk-inserted through the
project's schema (a migrated store); then `publisher run` starts as a process of its own on each node
(its own config file, inbox and web port, the same store URL), all at once. Every node's four `http_push`
channels point at a bench/_peer.py of its own with a 20 ms service time, and a node sends `--concurrency`
(default 1) rows at a time per channel, so a node's ceiling is channels × concurrency / 20 ms = 200
deliveries/s, where the daemon's CPU (a few ms per delivery) is not yet the bound: a node waits (on the
peers, on its store), and a second node doubles the sends in flight. Read-backs are a month after the send, so a
row's work in the run is its send alone.

  rate        deliveries/s counted at the peers, over the window where every node was sending (from the
              last node's first create to the first node's last create): 1 node and 2 nodes on PostgreSQL;
              ideal ratio ≥ 1.7 ×
  duplicates  creates beyond the first for one item on one channel, summed over every node's peer; ideal 0
  missing     (item, channel) pairs no peer ever got; ideal 0 (and every row sent or live in the store)
  pg/sqlite   1 node on SQLite against 1 on PostgreSQL, same load: the ratio, with a py-spy profile of each
              single node (what dominates when the gap is beyond 1.5 ×); at full size also 1 PostgreSQL
              node with `synchronous_commit = off` (a commit no longer waits for the WAL's fdatasync, as
              SQLite's WAL with synchronous=NORMAL does not wait for one): how much of the gap is that wait
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _fanout_kit import (  # noqa: E402
    CHANNELS,
    DONE,
    Daemon,
    build_pending,
    cpu_seconds,
    machine,
    profile,
    summarize_profile,
    write_config,
)
from _peer import PeerProcess  # noqa: E402

from publisher.store.schema import deliveries  # noqa: E402

SIZES = {  # revisions × 4 channels; seconds of py-spy on a single node (0: none); seconds allowed per run
    "full": {"revisions": 2000, "profile_s": 15.0, "limit_s": 900.0},
    "smoke": {"revisions": 10, "profile_s": 0.0, "limit_s": 120.0},
}
SERVICE_MS = 20.0
DEFAULT_PG = os.environ.get("PUBLISHER_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@contextlib.contextmanager
def pg_database(server: str, name: str, settings: dict[str, str] | None = None) -> Iterator[str]:
    """An empty database `name` on the server of `server` (created afresh, with `settings` for every session
    on it), dropped afterwards."""
    admin = sa.create_engine(make_url(server).set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
            for key, value in (settings or {}).items():
                conn.exec_driver_sql(f'ALTER DATABASE "{name}" SET {key} = {value}')
        yield make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        with contextlib.suppress(Exception), admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def _transactions(engine: sa.Engine) -> int | None:
    """PostgreSQL's count of transactions ended in this database so far (None on SQLite)."""
    if engine.dialect.name != "postgresql":
        return None
    with engine.connect() as conn:
        conn.exec_driver_sql("SELECT pg_stat_clear_snapshot()")
        return int(conn.exec_driver_sql("SELECT xact_commit + xact_rollback FROM pg_stat_database "
                                        "WHERE datname = current_database()").scalar_one())


def _creates(peer: PeerProcess) -> dict[str, Any]:
    data: dict[str, Any] = httpx.get(f"{peer.url}/_creates", timeout=30).json()
    return data


def _window_rate(per_node_times: list[list[float]]) -> tuple[float, float, int]:
    """Creates per second over the window every node was sending in: (rate, window seconds, creates in it)."""
    busy = [sorted(t) for t in per_node_times if t]
    if not busy:
        return 0.0, 0.0, 0
    start, end = max(t[0] for t in busy), min(t[-1] for t in busy)
    if len(busy) < len(per_node_times) or end <= start:  # a node never sent, or never overlapped: whole span
        start, end = min(t[0] for t in busy), max(t[-1] for t in busy)
    n = sum(1 for t in busy for x in t if start <= x <= end)
    return ((n - 1) / (end - start) if end > start and n > 1 else 0.0), end - start, n


def run(store_url: str, nodes: int, size: dict[str, float], *, concurrency: int, label: str,
        spy: Path | None = None) -> dict[str, Any]:
    """`nodes` daemons on the store at `store_url` until every row is sent; the figures of one run."""
    n_revisions = int(size["revisions"])
    total = build_pending(store_url, CHANNELS, n_revisions)
    engine = sa.create_engine(store_url)
    done_q = sa.select(sa.func.count()).select_from(deliveries).where(deliveries.c.state.in_(DONE))
    with tempfile.TemporaryDirectory(prefix=f"bench-nodes-{label}-") as tmp, contextlib.ExitStack() as stack:
        peers = [stack.enter_context(PeerProcess(delay_ms=SERVICE_MS)) for _ in range(nodes)]
        daemons: list[Daemon] = []
        try:
            for i, peer in enumerate(peers):
                work = Path(tmp) / f"node{i + 1}"
                work.mkdir()
                config, port = write_config(work, dict.fromkeys(CHANNELS, peer.url), concurrency=concurrency,
                                            store_url=store_url)
                daemons.append(Daemon(config, port))  # all started before any is waited for: they start together
            for d in daemons:
                d.wait_ready()
            cpu0 = [cpu_seconds(d.pid) for d in daemons]
            xact0 = _transactions(engine)
            with engine.connect() as conn:
                sent0 = int(conn.execute(done_q).scalar_one())
            spying = profile(daemons[0].pid, size["profile_s"], spy) if spy is not None and size["profile_s"] else None
            started = time.monotonic()
            while True:
                with engine.connect() as conn:
                    sent = int(conn.execute(done_q).scalar_one())
                if sent >= total:
                    break
                if time.monotonic() - started > size["limit_s"]:
                    raise RuntimeError(f"{label}: {sent} of {total} rows sent within {size['limit_s']:.0f} s")
                time.sleep(0.25)
            busy_s = time.monotonic() - started
            time.sleep(1.0)  # the servers' statistics are flushed about once a second
            xact = _transactions(engine)
            cpu = [round(cpu_seconds(d.pid) - c, 1) for d, c in zip(daemons, cpu0, strict=True)]
            if spying is not None:
                with contextlib.suppress(Exception):
                    spying.wait(size["profile_s"] + 10)
        finally:
            for d in daemons:
                d.stop()
        with engine.connect() as conn:
            states = dict(conn.execute(sa.select(deliveries.c.state, sa.func.count())
                                       .group_by(deliveries.c.state)).all())
        engine.dispose()
        created = [_creates(p) for p in peers]
    keys: Counter[str] = Counter()
    for c in created:
        keys.update(c["keys"])
    expected = {f"/ch/{ch} fanout-{i:07d}" for i in range(n_revisions) for ch in CHANNELS}
    rate, window, in_window = _window_rate([c["times"] for c in created])
    result: dict[str, Any] = {
        "store": make_url(store_url).get_backend_name(), "nodes": nodes, "deliveries": total,
        "concurrency_per_channel": concurrency, "service_ms": SERVICE_MS,
        "ceiling_per_s": round(nodes * len(CHANNELS) * concurrency * 1000 / SERVICE_MS, 1),
        "deliveries_per_s": round(rate, 1), "window_s": round(window, 2), "creates_in_window": in_window,
        "creates_per_node": [len(c["times"]) for c in created],
        "duplicates": sum(n - 1 for n in keys.values() if n > 1),
        "missing": len(expected - set(keys)), "unexpected": len(set(keys) - expected),
        "store_states": states,
        # every transaction in the database during the run (the bench's own polls, about 4 a second, included)
        "transactions_per_delivery": round((xact - xact0) / (total - sent0), 2)
        if xact is not None and xact0 is not None and total > sent0 else None,
        "daemon_cpu_s": cpu, "daemon_cpu_share": [round(c / busy_s, 2) if busy_s else 0.0 for c in cpu],
    }
    if spy is not None and spy.exists():
        result["profile"] = summarize_profile(spy)
    return result


def _print_figure(name: str, text: str) -> None:
    print(f"FIGURE {name}: {text}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: every figure, in seconds")
    parser.add_argument("--pg", default=DEFAULT_PG, help="a URL of the PostgreSQL server (its database is not used)")
    parser.add_argument("--db", default="bench_nodes", help="the database the bench creates and drops on that server")
    parser.add_argument("--concurrency", type=int, default=1, help="sends in flight per channel per node")
    parser.add_argument("--profile-dir", type=Path, help="keep py-spy's raw stacks of the single nodes here")
    parser.add_argument("--only", default="pg_1,pg_2,pg_1_async_commit,sqlite_1",
                        help="the runs to make (pg_1_async_commit never at the smoke size)")
    args = parser.parse_args()
    size = SIZES["smoke" if args.smoke else "full"]
    result: dict[str, Any] = {"machine": machine(), "command": " ".join([Path(sys.executable).name, *sys.argv]),
                              "size": "smoke" if args.smoke else "full"}
    print(f"machine: {result['machine']}\ncommand: {result['command']}", flush=True)
    parts = set(args.only.split(",")) - ({"pg_1_async_commit"} if args.smoke else set())
    with tempfile.TemporaryDirectory(prefix="bench-nodes-") as tmp:
        spies = Path(args.profile_dir or tmp)
        spies.mkdir(parents=True, exist_ok=True)
        runs: dict[str, dict[str, Any]] = {}
        for key, nodes, settings in (("pg_1", 1, None), ("pg_2", 2, None),
                                     ("pg_1_async_commit", 1, {"synchronous_commit": "off"})):
            if key in parts:
                with pg_database(args.pg, args.db, settings) as url:
                    runs[key] = run(url, nodes, size, concurrency=args.concurrency, label=key,
                                    spy=spies / f"{key}.txt" if nodes == 1 else None)
        if "sqlite_1" in parts:
            runs["sqlite_1"] = run(f"sqlite:///{Path(tmp) / 'publisher.db'}", 1, size, concurrency=args.concurrency,
                                   label="sqlite_1", spy=spies / "sqlite_1.txt")
    result.update(runs)
    zero: dict[str, Any] = {"deliveries_per_s": 0.0, "duplicates": 0, "missing": 0}
    one, two, lite = (runs.get(k, zero) for k in ("pg_1", "pg_2", "sqlite_1"))
    if one["deliveries_per_s"] and "pg_2" in runs:
        result["scaling"] = round(two["deliveries_per_s"] / one["deliveries_per_s"], 2)
        _print_figure("nodes", f"{one['deliveries_per_s']} deliveries/s with 1 node, {two['deliveries_per_s']} with "
                               f"2 = {result['scaling']} × (ideal ≥ 1.7 ×)")
    _print_figure("duplicates", f"{one['duplicates'] + two['duplicates']} (1 node {one['duplicates']}, 2 nodes "
                                f"{two['duplicates']}) (ideal 0)")
    _print_figure("missing", f"{one['missing'] + two['missing']} (1 node {one['missing']}, 2 nodes {two['missing']}) "
                             "(ideal 0)")
    if one["deliveries_per_s"] and "sqlite_1" in runs:
        result["sqlite_over_pg"] = round(lite["deliveries_per_s"] / one["deliveries_per_s"], 2)
        _print_figure("pg_vs_sqlite", f"1 node: {lite['deliveries_per_s']} deliveries/s on SQLite, "
                                      f"{one['deliveries_per_s']} on PostgreSQL = {result['sqlite_over_pg']} × "
                                      "(explain beyond 1.5 ×)")
    if "pg_1_async_commit" in runs:
        fast = runs["pg_1_async_commit"]
        _print_figure("pg_async_commit", f"1 node on PostgreSQL with synchronous_commit off: "
                                         f"{fast['deliveries_per_s']} deliveries/s (with it on: "
                                         f"{one['deliveries_per_s'] or 'not run'}; SQLite: "
                                         f"{lite['deliveries_per_s'] or 'not run'})")
    result["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(result, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
