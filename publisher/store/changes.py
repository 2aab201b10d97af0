"""How a running daemon learns that another process made deliveries due (`publisher approve`,
`publisher retry`, a second node): writers `announce` in their transaction, the daemon waits on a
`ChangeFeed`. Without it, such work would wait for the idle daemon's next poll (up to 30 s).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from publisher.store.db import Store

CHANNEL = "publisher_work"  # PostgreSQL NOTIFY channel: "deliveries were made due"


def announce(conn: Connection) -> None:
    """Tell running daemons, at this transaction's commit, that deliveries became due (a reviewer's
    `publisher approve`, a `publisher retry`). PostgreSQL: NOTIFY. SQLite needs nothing: a daemon sees
    any other connection's commit in `PRAGMA data_version` (ChangeFeed)."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"NOTIFY {CHANNEL}")


class ChangeFeed:
    """Waits until another connection may have made work due: the daemon's wake-up for what other
    processes write (without it, their approvals would wait for the next poll, up to 30 s).

    PostgreSQL: LISTEN on a connection of its own, outside the pool. SQLite: `PRAGMA data_version`
    on a connection of its own, every `poll` seconds; it changes whenever another connection commits
    (the daemon's own included, so the caller checks what is really due before waking anyone)."""

    def __init__(self, store: Store, poll: float = 0.1) -> None:
        self.poll = poll
        self._raw = store.engine.raw_connection()
        self._raw.detach()  # its session state (LISTEN, autocommit) must not go back to the pool
        self._conn = cast(Any, self._raw.dbapi_connection)  # sqlite3 or psycopg
        self._pg = store.engine.dialect.name == "postgresql"
        if self._pg:
            self._conn.autocommit = True
            self._conn.execute(f"LISTEN {CHANNEL}")
        else:
            self._version = self._data_version()

    def _data_version(self) -> int:
        cur = self._conn.cursor()
        try:
            return int(cur.execute("PRAGMA data_version").fetchone()[0])
        finally:
            cur.close()

    def wait(self, timeout: float) -> bool:
        """True once something changed (before `timeout` seconds), else False. Blocking: run it in a thread."""
        if self._pg:
            return any(True for _ in self._conn.notifies(timeout=timeout, stop_after=1))
        deadline = time.monotonic() + timeout
        while True:
            version = self._data_version()
            if version != self._version:
                self._version = version
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(self.poll)

    def close(self) -> None:
        self._raw.close()
