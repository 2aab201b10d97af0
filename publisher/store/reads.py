"""The store's read side for the lag report, the dashboard's plot, `/metrics` and `/healthz`: every
statement they run.

Each function takes the Connection of a read transaction and plain arguments, and returns frozen
dataclasses, tuples or numbers, never rows. publisher/lag/report.py keeps the rules (what is late,
fresh or at risk, as of a `now` it is given) and assembles the report from what these return.

The statements are tuned for a store of a million deliveries, where all but a few thousand rows are
live or superseded: the partial indexes of publisher/store/schema.py (migrations 0001 to 0005) are
chosen only when a query repeats their predicate verbatim, so the predicates below are the schema's
own text, not expressions built from the state enum. Change a statement here only with the "Lag report"
benchmark of docs/BENCHMARKS.md at hand (`python bench/bench_lag.py`, on SQLite and PostgreSQL).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.sql.expression import ColumnElement

from publisher.model import OPEN, DeliveryState, RevisionState
from publisher.store.schema import (
    IN_REVIEW_SQL,
    LIVE_ROWS_SQL,
    LOST_ROWS_SQL,
    OPEN_ROWS_SQL,
    UTCDateTime,
    deliveries,
    elapsed,
    revisions,
)

if TYPE_CHECKING:
    from publisher.store.db import Store

__all__ = ["Connection", "DeadlineCandidate", "LateRow", "LostRow", "deadline_candidates", "lags_by_offset",
           "late_count", "late_rows", "lost_rows", "newest_live", "newly_live", "open_counts", "report_snapshot",
           "window_lags"]

# Spelled exactly as the partial index ix_deliveries_open says it, so that SQLite and PostgreSQL use it.
OPEN_ROWS = sa.text(f"deliveries.{OPEN_ROWS_SQL}")
IN_REVIEW = sa.text(f"revisions.{IN_REVIEW_SQL}")
LIVE_ROWS = sa.text(f"deliveries.{LIVE_ROWS_SQL}")
LOST_ROWS = sa.text(f"deliveries.{LOST_ROWS_SQL}")
WALK_LIMIT = 1_000  # newest live rows read per channel before asking per category instead


@dataclass(frozen=True)
class LateRow:
    """A delivery due and not live, with its revision's number and title."""

    delivery_id: int
    item_id: str
    revision: int
    title: str
    state: DeliveryState
    retract: bool
    due_at: datetime
    sent_at: datetime | None
    attempts: int
    last_error: str | None
    next_attempt_at: datetime | None
    lost_at: datetime | None  # the channel took it down after it went live (the "lost" alert speaks for it)


@dataclass(frozen=True)
class LostRow:
    """A delivery the channel took down after it went live (deleted there, banned), its item not live there since."""

    delivery_id: int
    item_id: str
    revision: int
    title: str
    state: DeliveryState
    lost_at: datetime
    url: str | None  # where it was
    last_error: str | None  # the channel's reason, unless a later attempt's error replaced it


@dataclass(frozen=True)
class DeadlineCandidate:
    """A revision not live on any channel yet: still in review (or blocked), or approved with an open delivery."""

    revision_id: int
    item_id: str
    number: int
    title: str
    category: str
    state: RevisionState
    doc_date: date | None
    created_at: datetime


@contextmanager
def report_snapshot(store: Store) -> Iterator[Connection]:
    """One read transaction for a whole lag report, so that every number is of the same instant."""
    with store.read() as conn:
        if conn.dialect.name == "postgresql":  # each query reads a few thousand index entries at most:
            conn.exec_driver_sql("SET LOCAL max_parallel_workers_per_gather = 0")  # starting workers costs more
        yield conn


def _at(now: datetime) -> ColumnElement[datetime]:
    return sa.literal(now, UTCDateTime())


def open_counts(conn: Connection, names: list[str]) -> dict[str, dict[DeliveryState, int]]:
    """channel → state → rows due and not live (superseded left out); reads the partial index only."""
    q = (sa.select(deliveries.c.channel, deliveries.c.state, sa.func.count())
         .where(OPEN_ROWS).where(deliveries.c.channel.in_(names))
         .group_by(deliveries.c.channel, deliveries.c.state))
    out: dict[str, dict[DeliveryState, int]] = {n: {} for n in names}
    for ch, st, n in conn.execute(q):
        out[ch][DeliveryState(st)] = n
    return out


def _late(channel: str, due_before: datetime, since: datetime | None) -> ColumnElement[bool]:
    cond = sa.and_(OPEN_ROWS, deliveries.c.channel == channel, deliveries.c.due_at < due_before)
    if since is not None:
        cond = sa.and_(cond, deliveries.c.due_at >= since)
    return cond


def late_count(conn: Connection, channel: str, due_before: datetime, since: datetime | None = None) -> int:
    """How many of the channel's rows are open and were due before `due_before` (and at or after `since`)."""
    cond = _late(channel, due_before, since)
    return int(conn.execute(sa.select(sa.func.count()).select_from(deliveries).where(cond)).scalar_one())


def late_rows(conn: Connection, channel: str, due_before: datetime, since: datetime | None = None, *,
              limit: int | None) -> list[LateRow]:
    """The oldest `limit` (None: all) of the rows `late_count` counts, oldest first."""
    q = (sa.select(deliveries, revisions.c.number, revisions.c.title)
         .join(revisions, revisions.c.id == deliveries.c.revision_id)
         .where(_late(channel, due_before, since)).order_by(deliveries.c.due_at, deliveries.c.id))
    if limit is not None:
        q = q.limit(limit)
    return [LateRow(
        delivery_id=r["id"], item_id=r["item_id"], revision=r["number"], title=r["title"],
        state=DeliveryState(r["state"]), retract=bool(r["retract"]), due_at=r["due_at"], sent_at=r["sent_at"],
        attempts=r["attempts"], last_error=r["last_error"], next_attempt_at=r["next_attempt_at"], lost_at=r["lost_at"],
    ) for r in conn.execute(q).mappings()]


def lost_rows(conn: Connection, channel: str) -> list[LostRow]:
    """The channel's open rows taken down after they went live, unless a row of their item went live there since
    (a person's retry of the row itself leaves the open rows); the earliest loss first. Reads ix_deliveries_lost,
    which holds the lost rows only (a handful)."""
    again = deliveries.alias("again")
    live_again = (sa.exists().where(again.c.item_id == deliveries.c.item_id).where(again.c.channel == channel)
                  .where(again.c.state == DeliveryState.LIVE).where(again.c.live_at >= deliveries.c.lost_at))
    q = (sa.select(deliveries, revisions.c.number, revisions.c.title)
         .join(revisions, revisions.c.id == deliveries.c.revision_id)
         .where(LOST_ROWS).where(deliveries.c.channel == channel).where(deliveries.c.state.in_(sorted(OPEN)))
         .where(~live_again).order_by(deliveries.c.lost_at, deliveries.c.id))
    return [LostRow(delivery_id=r["id"], item_id=r["item_id"], revision=r["number"], title=r["title"],
                    state=DeliveryState(r["state"]), lost_at=r["lost_at"], url=r["url"], last_error=r["last_error"])
            for r in conn.execute(q).mappings()]


def _lag_at(now: datetime) -> ColumnElement[float]:
    """A row's lag in seconds: the stored one once live (deliveries.lag_s), else now − due_at."""
    return sa.func.coalesce(deliveries.c.lag_s, elapsed(deliveries.c.due_at, _at(now)))


def _by_due(channel: str, since: datetime, now: datetime, *columns: Any) -> sa.Select[Any]:
    """`columns` of the channel's rows due in [since, now], superseded left out (index ix_deliveries_window)."""
    return (sa.select(*columns).where(deliveries.c.channel == channel)
            .where(deliveries.c.due_at >= since).where(deliveries.c.due_at <= now)
            .where(deliveries.c.state != DeliveryState.SUPERSEDED))


def window_lags(conn: Connection, channel: str, since: datetime, now: datetime) -> list[float]:
    """Lags in seconds, ascending, of the channel's rows due in [since, now] (index ix_deliveries_window)."""
    result = conn.execute(_by_due(channel, since, now, _lag_at(now)))
    try:  # thousands of plain numbers a channel: straight from the DBAPI cursor, no Row object built for each
        lags = [v for (v,) in result.cursor.fetchall()]
    finally:
        result.close()
    lags.sort()  # floats on both backends: coalesce with the double lag_s makes PostgreSQL answer double
    return lags


def lags_by_offset(conn: Connection, channel: str, origin: datetime, now: datetime) -> list[tuple[float, float]]:
    """(seconds from `origin` to its due time, its lag in seconds) of each of the channel's rows due in
    [origin, now], both to the millisecond and computed by the database (the dashboard's lag-over-time plot)."""
    q = _by_due(channel, origin, now, elapsed(_at(origin), deliveries.c.due_at), _lag_at(now))
    return [(float(offset), float(lag)) for offset, lag in conn.execute(q)]


def newest_live(conn: Connection, channel: str, wanted: dict[str, timedelta],
                now: datetime) -> tuple[datetime | None, dict[str, datetime]]:
    """The channel's newest live time (retractions left out), and each wanted category's, where a category
    whose newest row is older than its threshold (the value in `wanted`) may be left out.

    Walks the live rows newest first (index channel, live_at) until every category is found, or those
    missing are past their threshold; the rest are asked one by one from their revisions (cheap exactly
    when such a category is rare)."""
    q = (sa.select(deliveries.c.live_at, revisions.c.category)
         .join(revisions, revisions.c.id == deliveries.c.revision_id)
         .where(deliveries.c.channel == channel).where(deliveries.c.live_at.is_not(None))
         .where(deliveries.c.retract.is_(False)).order_by(deliveries.c.live_at.desc()))
    newest: datetime | None = None
    found: dict[str, datetime] = {}
    missing = dict(wanted)
    # one plain read of the newest rows: a streamed cursor cost PostgreSQL a round trip per batch
    result = conn.execute(q.limit(WALK_LIMIT))
    try:
        for live_at, category in result:
            newest = newest or live_at
            if category in missing:
                found[category] = live_at
                del missing[category]
            if not missing or now - live_at > max(missing.values()):
                break
    finally:
        result.close()
    for category in missing:
        revs = sa.select(revisions.c.id).where(revisions.c.category == category)
        at = conn.execute(sa.select(sa.func.max(deliveries.c.live_at)).where(deliveries.c.channel == channel)
                          .where(deliveries.c.retract.is_(False)).where(deliveries.c.revision_id.in_(revs))
                          ).scalar()
        if at is not None:
            found[category] = at
    return newest, found


def deadline_candidates(conn: Connection) -> list[DeadlineCandidate]:
    """Revisions (retractions left out) not live on any channel: those still in review or blocked, and the
    approved ones with an open delivery. A revision counts as public once any of its deliveries is live."""
    cols = (revisions.c.id, revisions.c.item_id, revisions.c.number, revisions.c.title, revisions.c.category,
            revisions.c.state, revisions.c.doc_date, revisions.c.created_at)
    in_review = (sa.select(*cols).where(IN_REVIEW)
                 .where(~sa.exists().where(deliveries.c.revision_id == revisions.c.id).where(LIVE_ROWS)))
    # driven from the few open delivery rows, both tests answered by partial indexes alone (open rows,
    # live rows by revision): revisions are read only for the candidates that survive them
    live = deliveries.alias("live")
    open_revs = (sa.select(deliveries.c.revision_id).where(OPEN_ROWS)
                 .where(~sa.exists().where(live.c.revision_id == deliveries.c.revision_id)
                        .where(sa.text(f"live.{LIVE_ROWS_SQL}")))
                 .distinct().subquery())
    sending = (sa.select(*cols).join(open_revs, open_revs.c.revision_id == revisions.c.id)
               .where(revisions.c.state == RevisionState.APPROVED))
    rows: dict[int, DeadlineCandidate] = {}
    for q in (in_review, sending):
        for r in conn.execute(q.where(revisions.c.retract.is_(False))).mappings():
            rows[r["id"]] = DeadlineCandidate(
                revision_id=r["id"], item_id=r["item_id"], number=r["number"], title=r["title"],
                category=r["category"], state=RevisionState(r["state"]), doc_date=r["doc_date"],
                created_at=r["created_at"])
    return list(rows.values())


def newly_live(conn: Connection, channel: str, since: datetime) -> list[tuple[int, str, datetime, datetime]]:
    """(id, channel, due_at, live_at) of the channel's rows that went live after `since`, retractions left
    out (/metrics counts each into its lag histogram once). One range of ix_deliveries_channel_live."""
    # live_at is set only when a row turns live; no `state` term, so no planner picks the state index
    rows = conn.execute(
        sa.select(deliveries.c.id, deliveries.c.channel, deliveries.c.due_at, deliveries.c.live_at)
        .where(deliveries.c.channel == channel).where(deliveries.c.live_at > since)
        .where(deliveries.c.retract.is_(False))).all()
    return [(rid, ch, due, live) for rid, ch, due, live in rows]


def review_findings(conn: Connection) -> list[tuple[RevisionState, list[dict[str, Any]]]]:
    """(state, the screen's findings) of every revision in review or blocked (retractions left out): the
    lag report's review section counts them. One range of ix_revisions_state."""
    rows = conn.execute(sa.select(revisions.c.state, revisions.c.findings).where(IN_REVIEW)
                        .where(revisions.c.retract.is_(False))).all()
    return [(RevisionState(state), list(findings or [])) for state, findings in rows]
