"""The store: every SQL statement the core runs, behind one class assembled from its parts.

SQLAlchemy Core only. `engine` (the engine, SQLite's pragmas, read and write transactions, the audit
log's writer), `revisions` (intake and review: revisions, sign-offs, a revision's guarded moves),
`deliveries` (creating rows, the workers' claims, one guarded method per delivery transition), `accounts`
(reviewers' accounts, web sessions, notices), `sources` (the district feeds' polling state and the item each
entry became); this
module puts them together with what spans them: migrations, planner statistics, the cluster-wide
leader lock, and the listings the CLI and the web read. The backend-specific code is in `engine`
(SQLite pragmas), `Store.analyze`, `Store.leader` and publisher/store/changes.py.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Literal

import sqlalchemy as sa
import structlog

from publisher.model import AuditEntry, DeliveryState, ItemSummary, RevisionState
from publisher.store.accounts import AccountStore
from publisher.store.deliveries import DeliveryStore
from publisher.store.engine import make_engine, write_soon
from publisher.store.revisions import RevisionStore
from publisher.store.schema import audit, deliveries, items, metadata, revisions
from publisher.store.sources import SourceStore

RETRACTED = "retracted"  # `items(state=...)`: the items taken down, beside the two enums' states


log = structlog.get_logger()

class Store(DeliveryStore, RevisionStore, AccountStore, SourceStore):
    @classmethod
    def open(cls, url: str, *, migrate: bool | Literal["if-new"] = True) -> Store:
        """The store at `url`, its schema brought up to date (`migrate=True`), left as it is (False), or
        created only when the database holds none yet ("if-new": a reader never upgrades a store that the
        daemon of another version still uses, yet a first run finds its tables)."""
        store = cls(make_engine(url))
        if migrate == "if-new":
            with store.read() as conn:
                migrate = not sa.inspect(conn).has_table("deliveries")
        if migrate:
            store.migrate()
        return store

    def migrate(self) -> None:
        """Bring the schema to the newest alembic revision (an upgrade never drops data)."""
        from alembic import command
        from alembic.config import Config as AlembicConfig

        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
        with self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def analyze(self) -> None:
        """Refresh the planner's statistics. The lag report's partial indexes are only chosen when
        SQLite knows how few open rows there are: with sampled statistics (`analysis_limit`) every
        channel is estimated at the sample size and the open-rows index looks no better than the
        whole-channel one, so the statistics are full (writers wait meanwhile; readers do not); see
        docs/BENCHMARKS.md. PostgreSQL's autovacuum keeps its own statistics; nothing to do there."""
        if self.engine.dialect.name != "sqlite":
            return
        with self.engine.begin() as conn:
            conn.exec_driver_sql("PRAGMA analysis_limit=0")
            conn.exec_driver_sql("ANALYZE")

    def probe_write(self) -> None:
        """Raise unless the database takes a write now (a read-only file or server, a standby). Changes
        nothing: the statement sets a value to itself, and it is rolled back."""
        with self.engine.connect() as conn:
            tx = conn.begin()
            try:
                conn.execute(sa.text("UPDATE alembic_version SET version_num = version_num"))
            finally:
                tx.rollback()

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def leader(self, name: str) -> Iterator[bool]:
        """True while this process holds the cluster-wide lock `name` (a PostgreSQL advisory lock);
        periodic jobs that must run on one node at a time (alerts) run only while it is held.
        SQLite serves a single node, which is always the leader."""
        if self.engine.dialect.name != "postgresql":
            yield True
            return
        key = zlib.crc32(name.encode()) & 0x7FFFFFFF
        with self.engine.connect() as conn:
            held = bool(conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar())
            conn.commit()
            try:
                yield held
            finally:
                if held:
                    conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                    conn.commit()

    # --- listing -------------------------------------------------------------------------------


    async def lead_every(self, name: str, every: timedelta, work: Callable[[], Awaitable[object]],
                         stop: asyncio.Event, *, failed: str) -> None:
        """Run `work` every `every` until `stop` is set, on one node at a time (the lock `name`, see `leader`).
        A failing run (the store or a destination gone for a moment) is logged as the event `failed` and
        tried again at the next tick, never fatal."""
        while not stop.is_set():
            try:
                with self.leader(name) as leader:
                    if leader:
                        await work()
            except Exception:
                log.exception(failed)
            try:
                await asyncio.wait_for(stop.wait(), timeout=every.total_seconds())
            except TimeoutError:
                pass
    def audit_log(self, item_id: str | None = None, limit: int = 200) -> list[AuditEntry]:
        q = sa.select(audit).order_by(audit.c.id.desc()).limit(limit)
        if item_id is not None:
            q = q.where(audit.c.item_id == item_id)
        with self.read() as conn:
            return [AuditEntry.from_row(r) for r in conn.execute(q).mappings()]

    def items(self, state: str | None = None, limit: int = 500) -> list[ItemSummary]:
        """The newest items; `state` is "retracted", a revision's state (the current revision's), or a
        delivery's state (any row of the current revision)."""
        q = (sa.select(items, revisions.c.state.label("revision_state"))
             .join(revisions, sa.and_(revisions.c.item_id == items.c.id,
                                      revisions.c.number == items.c.current_revision))
             .order_by(items.c.updated_at.desc()).limit(limit))
        if state is not None:
            if state == RETRACTED:
                q = q.where(items.c.retracted.is_(True))
            elif state in set(RevisionState) - {RevisionState.SUPERSEDED}:
                q = q.where(revisions.c.state == state)
            else:
                q = q.where(sa.exists().where(deliveries.c.item_id == items.c.id)
                            .where(deliveries.c.revision_id == revisions.c.id).where(deliveries.c.state == state))
        with self.read() as conn:
            return [ItemSummary.from_row(r) for r in conn.execute(q).mappings()]

    def delivery_states(self) -> dict[str, dict[str, int]]:
        """channel → state → count (current rows; superseded ones are left out)."""
        q = (sa.select(deliveries.c.channel, deliveries.c.state, sa.func.count())
             .where(deliveries.c.state != DeliveryState.SUPERSEDED)
             .group_by(deliveries.c.channel, deliveries.c.state))
        out: dict[str, dict[str, int]] = {}
        with self.read() as conn:
            for ch, st, n in conn.execute(q):
                out.setdefault(ch, {})[st] = n
        return out


__all__ = ["Store", "make_engine", "metadata", "write_soon"]
