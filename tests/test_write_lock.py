"""The event loop never sleeps on SQLite's write lock: while another connection holds it (the intake process
storing a file, a reviewer's command), the dispatcher's claims and group commits step aside and try again, and
every send, read-back and web answer goes on meanwhile."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from channels.base import Receipt
from publisher.app.daemon import Daemon
from publisher.clock import FrozenClock
from publisher.model import DeliveryState
from publisher.sandbox import SandboxServer
from publisher.store.engine import WriteBusy, without_waiting, write_soon
from tests.harness import portal_daemon

T0 = datetime(2015, 3, 18, 9, 0, tzinfo=UTC)


@contextmanager
def lock_held(db: Path, seconds: float) -> Iterator[threading.Event]:
    """Another connection takes the database's write lock now and lets it go after `seconds` (set: released)."""
    other = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    released = threading.Event()

    def release() -> None:
        other.execute("COMMIT")
        released.set()

    timer = threading.Timer(seconds, release)
    timer.start()
    try:
        yield released
    finally:
        timer.join()
        other.close()


class Ticker:
    """The loop's longest stall: a task that wakes every 5 ms and notes the largest gap between its wakes."""

    def __init__(self) -> None:
        self.longest = 0.0
        self.task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.005)
            now = time.monotonic()
            self.longest, last = max(self.longest, now - last), now

    def __enter__(self) -> Ticker:
        self.task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()


async def _daemon(root: Path, sandbox: SandboxServer, n: int) -> Daemon:
    return await portal_daemon(root, sandbox, [f"lock-{i}" for i in range(n)], concurrency=4, clock=FrozenClock(T0))


def _db(daemon: Daemon) -> Path:
    return Path(daemon.store.engine.url.database or "")


async def test_a_write_that_finds_the_lock_taken_steps_aside_at_once_and_writes_nothing(
        tmp_path: Path, sandbox: SandboxServer) -> None:
    daemon = await _daemon(tmp_path, sandbox, 2)
    try:
        store, owner = daemon.store, daemon.dispatcher.owner
        with lock_held(_db(daemon), 0.4) as released:
            started = time.monotonic()
            with pytest.raises(WriteBusy), without_waiting():
                store.claim("city_portal", owner, T0, 10, timedelta(minutes=1))
            assert time.monotonic() - started < 0.1 and not released.is_set()  # no wait in SQLite's busy handler
            assert all(r.state == DeliveryState.PENDING for i in range(2) for r in store.deliveries_of(f"lock-{i}"))
            with Ticker() as ticker:  # the same claim from the loop: it waits for the lock, the loop does not
                rows = await write_soon(lambda: store.claim("city_portal", owner, T0, 10, timedelta(minutes=1)))
            assert released.is_set() and len(rows) == 2 and ticker.longest < 0.2
        with store.engine.connect() as conn:  # the connection waits again as any writer does, outside the loop
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000
    finally:
        await daemon.aclose()


async def test_sent_rows_wait_for_the_lock_in_their_batch_while_the_loop_goes_on(
        tmp_path: Path, sandbox: SandboxServer) -> None:
    daemon = await _daemon(tmp_path, sandbox, 3)
    try:
        d = daemon.dispatcher
        rows = daemon.store.claim("city_portal", d.owner, T0, 10, timedelta(minutes=1))
        revs = [d.books.revision(r) for r in rows]
        with lock_held(_db(daemon), 0.4) as released, Ticker() as ticker:
            done = [d.batch.sent(r, Receipt(remote_id=f"r{r.id}", url=None), rev)
                    for r, rev in zip(rows, revs, strict=True) if rev is not None]
            await asyncio.sleep(0.2)  # the batch's commit came due and found the lock taken: the rows wait, still sending
            assert not any(f.done() for f in done)
            assert {daemon.store.deliveries_of(r.item_id)[0].state for r in rows} == {DeliveryState.SENDING}
            await asyncio.gather(*done)
            assert released.is_set() and ticker.longest < 0.2
        assert {daemon.store.deliveries_of(r.item_id)[0].state for r in rows} == {DeliveryState.SENT}
    finally:
        await daemon.aclose()


async def test_a_run_while_the_lock_comes_and_goes_sends_each_item_once(tmp_path: Path, sandbox: SandboxServer) -> None:
    n = 12
    daemon = await _daemon(tmp_path, sandbox, n)
    try:
        with Ticker() as ticker:
            with lock_held(_db(daemon), 0.4):  # taken before the run's first claim
                run = asyncio.create_task(daemon.dispatcher.run_once())
                await asyncio.sleep(0.45)
            for _ in range(2):  # and twice more while it sends and commits
                with lock_held(_db(daemon), 0.4):
                    await asyncio.sleep(0.45)
            await run
        assert ticker.longest < 0.2
        async with httpx.AsyncClient(timeout=10) as client:
            log = (await client.get(f"{sandbox.base_url}/_sandbox/portal/requests")).json()
        assert sorted(r["body"]["source_id"] for r in log if r["method"] == "POST") == sorted(f"lock-{i}" for i in range(n))
        for i in range(n):
            (row,) = daemon.store.deliveries_of(f"lock-{i}")
            assert row.state in (DeliveryState.SENT, DeliveryState.LIVE) and row.attempts == 1
    finally:
        await daemon.aclose()
