"""The store: every SQL statement the core runs, behind one small class.

SQLAlchemy Core only. SQLite (WAL) by default, PostgreSQL for several nodes; the backend-specific
code is `_on_connect` (SQLite pragmas), `Store.analyze` (SQLite's planner statistics) and, in
publisher/store/changes.py, how other processes' writes are noticed (NOTIFY, or `data_version`).
Claims use `FOR UPDATE SKIP LOCKED`, which SQLite's compiler leaves out (its single writer makes the UPDATE atomic anyway).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, RowMapping

from publisher.store.changes import announce
from publisher.store.schema import approvals, audit, deliveries, items, metadata, placements, revisions

ACTIVE = ("waiting", "pending", "retrying")  # not yet sent, may be superseded by a newer revision
TERMINAL = ("live", "failed", "manual", "superseded")


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


class Store:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, url: str, *, migrate: bool = True) -> Store:
        store = cls(make_engine(url))
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
        SQLite knows how few open rows there are: over a million rows the report takes ~400 ms without
        statistics, ~90 ms with sampled ones (`analysis_limit` estimates every channel at the sample
        size, so the open-rows index looks no better than the whole-channel one) and ~35 ms with full
        ones, which take ~0.8 s per million rows to gather (writers wait meanwhile; readers do not).
        PostgreSQL's autovacuum keeps its own statistics; nothing to do there."""
        if self.engine.dialect.name != "sqlite":
            return
        with self.engine.begin() as conn:
            conn.exec_driver_sql("PRAGMA analysis_limit=0")
            conn.exec_driver_sql("ANALYZE")

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect().execution_options(readonly=True) as conn:
            yield conn

    @contextmanager
    def tx(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

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

    # --- audit ---------------------------------------------------------------------------------

    @staticmethod
    def audit(conn: Connection, at: datetime, actor: str, action: str, *, item_id: str | None = None,
              revision: int | None = None, channel: str | None = None, **detail: Any) -> None:
        conn.execute(audit.insert().values(at=at, actor=actor, action=action, item_id=item_id,
                                           revision=revision, channel=channel, detail=detail))

    def audit_log(self, item_id: str | None = None, limit: int = 200) -> list[RowMapping]:
        q = sa.select(audit).order_by(audit.c.id.desc()).limit(limit)
        if item_id is not None:
            q = q.where(audit.c.item_id == item_id)
        with self.read() as conn:
            return list(conn.execute(q).mappings())

    # --- intake --------------------------------------------------------------------------------

    def known_file(self, sha256: str) -> RowMapping | None:
        with self.read() as conn:
            return conn.execute(sa.select(revisions.c.item_id, revisions.c.number)
                                .where(revisions.c.file_sha256 == sha256).limit(1)).mappings().first()

    def add_revision(self, conn: Connection, fields: dict[str, Any], now: datetime) -> tuple[int, int]:
        """Insert the next revision of an item (creating the item); older unapproved ones are superseded."""
        item_id = fields["item_id"]
        row = conn.execute(sa.select(items.c.current_revision).where(items.c.id == item_id)
                           .with_for_update()).first()
        number = 1 if row is None else row[0] + 1
        if row is None:
            conn.execute(items.insert().values(id=item_id, category=fields["category"], title=fields["title"],
                                               current_revision=1, retracted=False, created_at=now, updated_at=now))
        else:
            conn.execute(items.update().where(items.c.id == item_id).values(
                current_revision=number, title=fields["title"], category=fields["category"], updated_at=now))
            conn.execute(revisions.update().where(revisions.c.item_id == item_id)
                         .where(revisions.c.state.in_(("review", "blocked"))).values(state="superseded"))
        values = {k: v for k, v in fields.items() if k != "item_id"}
        key = conn.execute(revisions.insert().values(item_id=item_id, number=number, created_at=now, **values)
                           ).inserted_primary_key
        assert key is not None
        return int(key[0]), number

    # --- review --------------------------------------------------------------------------------

    def revision(self, item_id: str, number: int | None = None, conn: Connection | None = None) -> RowMapping | None:
        q = sa.select(revisions).where(revisions.c.item_id == item_id)
        q = q.where(revisions.c.number == number) if number else q.order_by(revisions.c.number.desc()).limit(1)
        if conn is not None:
            return conn.execute(q).mappings().first()
        with self.read() as c:
            return c.execute(q).mappings().first()

    def revision_by_id(self, conn: Connection, revision_id: int) -> RowMapping:
        return conn.execute(sa.select(revisions).where(revisions.c.id == revision_id)).mappings().one()

    def revisions_in(self, states: Sequence[str]) -> list[RowMapping]:
        with self.read() as conn:
            return list(conn.execute(sa.select(revisions).where(revisions.c.state.in_(states))
                                     .order_by(revisions.c.created_at, revisions.c.id)).mappings())

    def approvals(self, revision_id: int, conn: Connection | None = None) -> list[RowMapping]:
        q = sa.select(approvals).where(approvals.c.revision_id == revision_id).order_by(approvals.c.id)
        if conn is not None:
            return list(conn.execute(q).mappings())
        with self.read() as c:
            return list(c.execute(q).mappings())

    @staticmethod
    def add_approval(conn: Connection, revision_id: int, action: str, by: str, at: datetime,
                     role: str | None = None, reason: str | None = None) -> None:
        conn.execute(approvals.insert().values(revision_id=revision_id, action=action, role=role, by=by,
                                               reason=reason, at=at))

    @staticmethod
    def set_revision_state(conn: Connection, revision_id: int, state: str, approved_at: datetime | None = None) -> None:
        values: dict[str, Any] = {"state": state}
        if approved_at is not None:
            values["approved_at"] = approved_at
        conn.execute(revisions.update().where(revisions.c.id == revision_id).values(**values))

    # --- deliveries: creation --------------------------------------------------------------------

    @staticmethod
    def supersede_active(conn: Connection, item_id: str, channels: Iterable[str], now: datetime) -> int:
        res = conn.execute(deliveries.update().where(deliveries.c.item_id == item_id)
                           .where(deliveries.c.channel.in_(list(channels)))
                           .where(deliveries.c.state.in_(ACTIVE))
                           .values(state="superseded", updated_at=now))
        return res.rowcount or 0

    @staticmethod
    def add_deliveries(conn: Connection, rows: list[dict[str, Any]], now: datetime) -> None:
        if rows:
            conn.execute(deliveries.insert(), [{"attempts": 0, "verify_attempts": 0, "created_at": now,
                                                "updated_at": now, **r} for r in rows])
            announce(conn)

    @staticmethod
    def placement(conn: Connection, item_id: str, channel: str) -> RowMapping | None:
        return conn.execute(sa.select(placements).where(placements.c.item_id == item_id)
                            .where(placements.c.channel == channel)).mappings().first()

    def placements_of(self, item_id: str) -> list[RowMapping]:
        with self.read() as conn:
            return self.placements_of_conn(conn, item_id)

    @staticmethod
    def placements_of_conn(conn: Connection, item_id: str) -> list[RowMapping]:
        return list(conn.execute(sa.select(placements).where(placements.c.item_id == item_id)
                                 .order_by(placements.c.channel)).mappings())

    # --- deliveries: the worker ----------------------------------------------------------------

    def claim(self, channel: str, owner: str, now: datetime, limit: int, lease: timedelta,
              *, send: bool = True) -> list[RowMapping]:
        """Take up to `limit` due rows of one channel: pending/retrying to send (unless `send` is
        false, e.g. when the rate limit is spent), and sent rows to verify."""
        other = deliveries.alias("other")
        in_flight = sa.exists().where(other.c.item_id == deliveries.c.item_id).where(
            other.c.channel == channel).where(other.c.state == "sending")
        due = (sa.select(deliveries.c.id).where(deliveries.c.channel == channel)
               .where(deliveries.c.state.in_(("pending", "retrying", "sent") if send else ("sent",)))
               .where(deliveries.c.next_attempt_at <= now)
               .where(sa.or_(deliveries.c.lease_until.is_(None), deliveries.c.lease_until < now))
               .where(~in_flight)
               .order_by(deliveries.c.next_attempt_at, deliveries.c.id).limit(limit)
               .with_for_update(skip_locked=True))
        to_send = deliveries.c.state.in_(("pending", "retrying"))
        with self.engine.begin() as conn:
            ids = [r[0] for r in conn.execute(due)]
            if not ids:
                return []
            # the lease, and for a row to send `sending`, in one statement of the same transaction:
            # after a crash such a row is reconciled through `find`, never blindly resent
            rows = conn.execute(deliveries.update().where(deliveries.c.id.in_(ids)).values(
                lease_owner=owner, lease_until=now + lease, updated_at=now,
                state=sa.case((to_send, "sending"), else_=deliveries.c.state),
                attempts=sa.case((to_send, deliveries.c.attempts + 1), else_=deliveries.c.attempts),
            ).returning(*deliveries.c)).mappings().all()
        return sorted(rows, key=lambda r: (r["next_attempt_at"], r["id"]))

    def stale_sending(self, now: datetime, owner: str | None = None) -> list[RowMapping]:
        """Rows left `sending` by a process that died (lease expired), or by this node's previous life."""
        q = sa.select(deliveries).where(deliveries.c.state == "sending")
        cond = sa.or_(deliveries.c.lease_until.is_(None), deliveries.c.lease_until < now)
        if owner is not None:
            cond = sa.or_(cond, deliveries.c.lease_owner == owner)
        with self.read() as conn:
            return list(conn.execute(q.where(cond)).mappings())

    def update_delivery(self, conn: Connection, delivery_id: int, now: datetime, **values: Any) -> None:
        conn.execute(deliveries.update().where(deliveries.c.id == delivery_id)
                     .values(updated_at=now, lease_owner=None, lease_until=None, **values))

    @staticmethod
    def set_placement(conn: Connection, item_id: str, channel: str, *, remote_id: str, url: str | None,
                      extra: dict[str, Any], revision: int, retracted: bool, now: datetime) -> None:
        values = {"remote_id": remote_id, "url": url, "extra": extra, "revision": revision,
                  "retracted": retracted, "updated_at": now}
        done = conn.execute(placements.update().where(placements.c.item_id == item_id)
                            .where(placements.c.channel == channel).values(**values))
        if not done.rowcount:
            conn.execute(placements.insert().values(item_id=item_id, channel=channel, **values))

    @staticmethod
    def release_waiting(conn: Connection, item_id: str, channels: Sequence[str], now: datetime) -> list[str]:
        rows = conn.execute(sa.select(deliveries.c.id, deliveries.c.channel, deliveries.c.due_at)
                            .where(deliveries.c.item_id == item_id).where(deliveries.c.channel.in_(channels))
                            .where(deliveries.c.state == "waiting")).all()
        for rid, _ch, due in rows:
            conn.execute(deliveries.update().where(deliveries.c.id == rid).values(
                state="pending", next_attempt_at=max(due, now), updated_at=now))
        return [r[1] for r in rows]

    @staticmethod
    def fail_waiting(conn: Connection, item_id: str, channels: Sequence[str], now: datetime, error: str) -> list[str]:
        rows = conn.execute(sa.select(deliveries.c.id, deliveries.c.channel).where(deliveries.c.item_id == item_id)
                            .where(deliveries.c.channel.in_(channels)).where(deliveries.c.state == "waiting")).all()
        if rows:
            conn.execute(deliveries.update().where(deliveries.c.id.in_([r[0] for r in rows]))
                         .values(state="failed", last_error=error, updated_at=now))
        return [r[1] for r in rows]

    def sent_since(self, channel: str, since: datetime, limit: int) -> list[datetime]:
        """The newest `limit` send times on a channel since `since`, oldest first (the client-side rate limit).
        Read newest-first from ix_deliveries_channel_sent: at most `limit` index entries, however long the
        channel's history (a scan of a year of microblog rows held the event loop ~1 s at each drain)."""
        with self.read() as conn:
            newest = conn.execute(
                sa.select(deliveries.c.sent_at).where(deliveries.c.channel == channel)
                .where(deliveries.c.sent_at >= since).order_by(deliveries.c.sent_at.desc()).limit(limit)).scalars()
            return list(newest)[::-1]

    def next_due(self, channel: str, *, send: bool = True) -> datetime | None:
        states = ("pending", "retrying", "sent") if send else ("sent",)
        with self.read() as conn:
            return conn.execute(sa.select(sa.func.min(deliveries.c.next_attempt_at))
                                .where(deliveries.c.channel == channel)
                                .where(deliveries.c.state.in_(states))).scalar()

    def delivery(self, delivery_id: int) -> RowMapping | None:
        with self.read() as conn:
            return conn.execute(sa.select(deliveries).where(deliveries.c.id == delivery_id)).mappings().first()

    def deliveries_of(self, item_id: str) -> list[RowMapping]:
        with self.read() as conn:
            q = (sa.select(deliveries, revisions.c.number.label("revision"))
                 .join(revisions, revisions.c.id == deliveries.c.revision_id)
                 .where(deliveries.c.item_id == item_id).order_by(deliveries.c.id))
            return list(conn.execute(q).mappings())

    def requeue(self, conn: Connection, item_id: str, channel: str | None, now: datetime,
                resend_sent: Sequence[str] = ()) -> list[RowMapping]:
        """The item's failed or retrying rows go back to pending, due now; so do its rows that were
        sent but never showed up, on the channels in `resend_sent` (where sending again is an update)."""
        stuck = sa.or_(deliveries.c.state.in_(("failed", "retrying")),
                       sa.and_(deliveries.c.state == "sent", deliveries.c.channel.in_(list(resend_sent))))
        q = sa.select(deliveries).where(deliveries.c.item_id == item_id).where(stuck)
        if channel:
            q = q.where(deliveries.c.channel == channel)
        rows = list(conn.execute(q).mappings())
        for r in rows:
            # attempts=1, not 0: the next attempt counts as a repeat, so a create asks `find` first
            conn.execute(deliveries.update().where(deliveries.c.id == r["id"]).values(
                state="pending", next_attempt_at=now, attempts=1, verify_attempts=0, last_error=None,
                updated_at=now, lease_owner=None, lease_until=None, retry_from=now))
        if rows:
            announce(conn)
        return rows

    # --- listing -------------------------------------------------------------------------------

    def items(self, state: str | None = None, limit: int = 500) -> list[RowMapping]:
        q = (sa.select(items, revisions.c.state.label("revision_state"))
             .join(revisions, sa.and_(revisions.c.item_id == items.c.id,
                                      revisions.c.number == items.c.current_revision))
             .order_by(items.c.updated_at.desc()).limit(limit))
        if state is not None:
            if state == "retracted":
                q = q.where(items.c.retracted.is_(True))
            elif state in ("review", "blocked", "approved", "rejected"):
                q = q.where(revisions.c.state == state)
            else:
                q = q.where(sa.exists().where(deliveries.c.item_id == items.c.id)
                            .where(deliveries.c.revision_id == revisions.c.id).where(deliveries.c.state == state))
        with self.read() as conn:
            return list(conn.execute(q).mappings())

    def delivery_states(self) -> dict[str, dict[str, int]]:
        """channel → state → count (current rows; superseded ones are left out)."""
        q = (sa.select(deliveries.c.channel, deliveries.c.state, sa.func.count())
             .where(deliveries.c.state != "superseded").group_by(deliveries.c.channel, deliveries.c.state))
        out: dict[str, dict[str, int]] = {}
        with self.read() as conn:
            for ch, st, n in conn.execute(q):
                out.setdefault(ch, {})[st] = n
        return out

    def set_item_retracted(self, conn: Connection, item_id: str, now: datetime) -> None:
        conn.execute(items.update().where(items.c.id == item_id).values(retracted=True, updated_at=now))


__all__ = ["Store", "make_engine", "metadata"]
