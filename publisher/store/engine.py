"""The engine and its transactions: what every part of the store stands on.

SQLite (WAL) by default, PostgreSQL for several nodes. `_on_connect` sets SQLite's pragmas and `_begin`
makes its writers take the lock up front; `StoreBase` gives the store's parts (publisher/store/db.py,
deliveries.py, revisions.py) their engine, their read and write transactions, and the audit log's writer.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from publisher.store.schema import audit

_AUDIT = audit.insert()  # built once: one line per action, several per item file
WAIT_S = 30  # how long a SQLite writer waits for another connection's write lock before it gives up
_NO_WAIT: ContextVar[bool] = ContextVar("store_no_wait", default=False)
T = TypeVar("T")


class WriteBusy(Exception):  # noqa: N818  # a moment's state, not a failure
    """Another connection holds SQLite's write lock right now. Raised only under `without_waiting`, by the
    BEGIN of a write transaction: none of its statements has run, so the caller may simply try again."""


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.removeprefix("sqlite:///")
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": WAIT_S})
        sa.event.listen(engine, "connect", _on_connect)
        sa.event.listen(engine, "begin", _begin)
        return engine
    return sa.create_engine(url, pool_pre_ping=True)


def _on_connect(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # let the "begin" listener issue BEGIN IMMEDIATE (no lock upgrades)
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process crashes
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _begin(conn: Connection) -> None:
    # Writers take the lock up front (no deadlocking lock upgrades); readers stay deferred under WAL.
    if conn.get_execution_options().get("readonly"):
        conn.exec_driver_sql("BEGIN")
    elif not _NO_WAIT.get():
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:  # the event loop's writes: never asleep in SQLite's busy handler while another process writes
        raw: Any = conn.connection.driver_connection
        raw.execute("PRAGMA busy_timeout=0")
        try:
            raw.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY:
                raise WriteBusy(str(exc)) from exc
            raise
        finally:
            raw.execute(f"PRAGMA busy_timeout={WAIT_S * 1000}")


@contextmanager
def without_waiting() -> Iterator[None]:
    """Within it, a SQLite write transaction that finds another connection (the intake process, a reviewer's
    command) holding the write lock raises `WriteBusy` at once instead of waiting. SQLite's own wait sleeps
    (1, 2, 5, 10 … ms, whatever the holder does): on the event loop that sleep stops every send and every web
    answer, so the daemon's hot writes go through `write_soon` (or retry on a timer) instead. PostgreSQL locks
    rows, not the database: there it changes nothing."""
    token = _NO_WAIT.set(True)
    try:
        yield
    finally:
        _NO_WAIT.reset(token)


def next_pause(pause: float) -> float:
    """The pause before the next try of a write that found the lock taken: 0.5 ms first, doubling to 10 ms."""
    return min(pause * 2, 0.01) if pause else 0.0005


async def write_soon(write: Callable[[], T]) -> T:
    """`write()` (one write transaction) from the event loop: while another connection holds SQLite's write
    lock, the loop goes on with its other work and tries again after a short pause (`next_pause`). After
    `WAIT_S` of that it waits in SQLite as any writer does, and fails as any writer would."""
    pause, give_up = 0.0, time.monotonic() + WAIT_S
    while time.monotonic() < give_up:
        try:
            with without_waiting():
                return write()
        except WriteBusy:
            pause = next_pause(pause)
            await asyncio.sleep(pause)
    return write()


class StoreBase:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect().execution_options(readonly=True) as conn:
            yield conn

    @contextmanager
    def tx(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    @staticmethod
    def audit(conn: Connection, at: datetime, actor: str, action: str, *, item_id: str | None = None,
              revision: int | None = None, channel: str | None = None, **detail: Any) -> None:
        conn.execute(_AUDIT, {"at": at, "actor": actor, "action": action, "item_id": item_id, "revision": revision,
                              "channel": channel, "detail": detail})

    @staticmethod
    def audit_many(conn: Connection, at: datetime, actor: str, entries: list[dict[str, Any]]) -> None:
        """Several audit lines in one statement; each entry: action, item_id, revision, channel, detail."""
        if entries:
            conn.execute(audit.insert(), [{"at": at, "actor": actor, **e} for e in entries])
