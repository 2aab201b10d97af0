"""The engine and its transactions: what every part of the store stands on.

SQLite (WAL) by default, PostgreSQL for several nodes. `_on_connect` sets SQLite's pragmas and `_begin`
makes its writers take the lock up front; `StoreBase` gives the store's parts (publisher/store/db.py,
deliveries.py, revisions.py) their engine, their read and write transactions, and the audit log's writer.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from publisher.store.schema import audit

_AUDIT = audit.insert()  # built once: one line per action, several per item file


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.removeprefix("sqlite:///")
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
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
    conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get("readonly") else "BEGIN IMMEDIATE")


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
