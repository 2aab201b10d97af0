"""The lag model: how far behind each channel is, read from the store at an instant the caller gives.

Every function takes `now` (from the injected Clock), so each rule is tested standing exactly on
its boundary. Definitions (docs/LAG_JSON.md is the public contract):

- lag of a delivery = (live_at, or now while not live) − due_at; superseded rows are ignored;
- a delivery is **late** when it is not live and now − due_at > the channel's SLA;
- freshness: the time since the newest item (not a retraction) went live on a channel, and per
  category on it, against a threshold; "warning" from `lag.freshness_warn_before` ahead of it;
- the legal deadline: a revision must be live somewhere by the end of the N-th working day
  (`lag.deadline_working_days`) after its document date, or after the day it was made.

All SQL is SQLAlchemy Core over publisher.store.schema and runs on SQLite and PostgreSQL; the indexes it
relies on are in migrations 0001 and 0002 (see docs/BENCHMARKS.md, "Lag report").
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.sql.expression import ColumnElement

from publisher.config.settings import Config
from publisher.lag import workdays
from publisher.store.db import Store
from publisher.store.schema import (
    IN_REVIEW_SQL,
    LIVE_ROWS_SQL,
    OPEN_ROWS_SQL,
    UTCDateTime,
    deliveries,
    elapsed,
    revisions,
)

OPEN = ("waiting", "pending", "sending", "sent", "retrying", "failed", "manual")  # due and not live
# Spelled exactly as the partial index ix_deliveries_open says it, so that SQLite and PostgreSQL use it.
OPEN_ROWS = sa.text(f"deliveries.{OPEN_ROWS_SQL}")
IN_REVIEW = sa.text(f"revisions.{IN_REVIEW_SQL}")
LIVE_ROWS = sa.text(f"deliveries.{LIVE_ROWS_SQL}")
WALK_LIMIT = 1_000  # newest live rows read per channel before asking per category instead


@dataclass(frozen=True)
class LateDelivery:
    delivery_id: int
    channel: str
    item_id: str
    revision: int
    title: str
    state: str
    retract: bool
    due_at: datetime
    sent_at: datetime | None
    lag: timedelta
    over_sla: timedelta
    attempts: int
    last_error: str | None
    next_attempt_at: datetime | None


@dataclass(frozen=True)
class Freshness:
    channel: str
    category: str | None  # None: the channel as a whole
    threshold: timedelta
    last_live_at: datetime | None
    age: timedelta | None
    status: str  # ok | warning | breached | never


@dataclass(frozen=True)
class DeadlineRisk:
    item_id: str
    revision: int
    title: str
    category: str
    state: str  # the revision's: review | blocked | approved
    start: date
    last_day: date  # the last working day (China time) on which it may still go public
    deadline: datetime  # the end of last_day
    working_days_left: int
    status: str  # at_risk | overdue
    calendar_known: bool


@dataclass
class ChannelLag:
    name: str
    display: str
    type: str
    sla: timedelta
    counts: dict[str, int] = field(default_factory=dict)
    late_total: int = 0
    late: list[LateDelivery] = field(default_factory=list)
    window_total: int = 0
    window_over_sla: int = 0  # due in the window and live (or still not) later than the SLA
    p50: timedelta | None = None
    p95: timedelta | None = None
    max: timedelta | None = None
    last_live_at: datetime | None = None

    @property
    def status(self) -> str:
        return "late" if self.late_total else "on_time"


@dataclass
class LagReport:
    generated_at: datetime
    since: datetime
    channels: list[ChannelLag]
    freshness: list[Freshness]
    deadlines: list[DeadlineRisk]
    config: Config = field(repr=False)


def _at(now: datetime) -> ColumnElement[datetime]:
    return sa.literal(now, UTCDateTime())


# --- pure rules ------------------------------------------------------------------------------------

def lag_of(due_at: datetime, live_at: datetime | None, now: datetime) -> timedelta:
    return (live_at or now) - due_at


def is_late(due_at: datetime, live_at: datetime | None, sla: timedelta, now: datetime) -> bool:
    return live_at is None and now - due_at > sla


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of an ascending list: always a lag that really happened."""
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def freshness_status(last_live_at: datetime | None, threshold: timedelta, warn_before: timedelta,
                     now: datetime) -> str:
    if last_live_at is None:
        return "never"
    age = now - last_live_at
    if age >= threshold:
        return "breached"
    if age >= threshold - warn_before:
        return "warning"
    return "ok"


def channel_freshness_threshold(config: Config, channel: str) -> timedelta:
    """The channel's own `freshness`, else the strictest of the categories routed to it, else 365 days."""
    own = config.channels[channel].freshness
    if own is not None:
        return own
    routed = [c.freshness for c in config.categories.values() if channel in c.channels]
    return min(routed, default=timedelta(days=365))


def routed_categories(config: Config, channel: str) -> list[str]:
    return [key for key, c in config.categories.items() if channel in c.channels]


@lru_cache(maxsize=8192)
def _deadline(start: date, working_days: int) -> tuple[datetime, date]:
    at = workdays.deadline(start, working_days)
    return at, workdays.add_workdays(start, working_days)


def deadline_risk(start: date, now: datetime, working_days: int,
                  warn_working_days: int) -> tuple[str, datetime, date, int]:
    """(status, deadline, last day, working days left after today): status is ok, at_risk or overdue."""
    at, last_day = _deadline(start, working_days)
    left = workdays.workdays_between(workdays.local_date(now), last_day)
    if now >= at:
        return "overdue", at, last_day, left
    return ("at_risk" if left <= warn_working_days else "ok"), at, last_day, left


# --- queries ---------------------------------------------------------------------------------------

def open_counts(conn: Connection, names: list[str]) -> dict[str, dict[str, int]]:
    """channel → state → rows due and not live (superseded left out); reads the partial index only."""
    q = (sa.select(deliveries.c.channel, deliveries.c.state, sa.func.count())
         .where(OPEN_ROWS).where(deliveries.c.channel.in_(names))
         .group_by(deliveries.c.channel, deliveries.c.state))
    out: dict[str, dict[str, int]] = {n: {} for n in names}
    for ch, st, n in conn.execute(q):
        out[ch][st] = n
    return out


def late_deliveries(conn: Connection, config: Config, channel: str, now: datetime, *,
                    since: datetime | None = None, limit: int | None = 100) -> tuple[int, list[LateDelivery]]:
    """(how many, the oldest `limit` of them) late deliveries of one channel, oldest first."""
    sla = config.channels[channel].sla
    cond = sa.and_(OPEN_ROWS, deliveries.c.channel == channel, deliveries.c.due_at < now - sla)
    if since is not None:
        cond = sa.and_(cond, deliveries.c.due_at >= since)
    total = conn.execute(sa.select(sa.func.count()).select_from(deliveries).where(cond)).scalar_one()
    if not total or limit == 0:
        return total, []
    q = (sa.select(deliveries, revisions.c.number, revisions.c.title)
         .join(revisions, revisions.c.id == deliveries.c.revision_id)
         .where(cond).order_by(deliveries.c.due_at, deliveries.c.id))
    if limit is not None:
        q = q.limit(limit)
    rows = [LateDelivery(
        delivery_id=r["id"], channel=channel, item_id=r["item_id"], revision=r["number"], title=r["title"],
        state=r["state"], retract=bool(r["retract"]), due_at=r["due_at"], sent_at=r["sent_at"],
        lag=now - r["due_at"], over_sla=now - r["due_at"] - sla, attempts=r["attempts"],
        last_error=r["last_error"], next_attempt_at=r["next_attempt_at"],
    ) for r in conn.execute(q).mappings()]
    return total, rows


def _lag_at(now: datetime) -> ColumnElement[float]:
    """A row's lag in seconds: the stored one once live (deliveries.lag_s), else now − due_at."""
    return sa.func.coalesce(deliveries.c.lag_s, elapsed(deliveries.c.due_at, _at(now)))


def _by_due(channel: str, since: datetime, now: datetime, *columns: Any) -> sa.Select[Any]:
    """`columns` of the channel's rows due in [since, now], superseded left out (index ix_deliveries_window)."""
    return (sa.select(*columns).where(deliveries.c.channel == channel)
            .where(deliveries.c.due_at >= since).where(deliveries.c.due_at <= now)
            .where(deliveries.c.state != "superseded"))


def _window(conn: Connection, channel: str, since: datetime, now: datetime) -> list[float]:
    """Lags in seconds, ascending, of the channel's rows due in [since, now] (index ix_deliveries_window)."""
    result = conn.execute(_by_due(channel, since, now, _lag_at(now)))
    try:  # ~5 000 plain numbers a channel: straight from the DBAPI cursor, a third faster than Row objects
        lags = [v for (v,) in result.cursor.fetchall()]
    finally:
        result.close()
    lags.sort()  # floats on both backends: coalesce with the double lag_s makes PostgreSQL answer double
    return lags


def _newest_live(conn: Connection, channel: str, wanted: dict[str, timedelta],
                 now: datetime) -> tuple[datetime | None, dict[str, datetime]]:
    """The channel's newest live time, and each wanted category's. Walks the live rows newest first
    (index channel, live_at) until every category is found, or those missing are past their threshold;
    the rest are asked one by one from their revisions (cheap exactly when such a category is rare)."""
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


def freshness(conn: Connection, config: Config, channel: str, now: datetime) -> tuple[datetime | None, list[Freshness]]:
    """The channel's newest live time, and its freshness entries (the channel first, then each routed category)."""
    warn = config.lag.freshness_warn_before
    cats = {key: config.categories[key].freshness for key in routed_categories(config, channel)}
    newest, found = _newest_live(conn, channel, cats, now)

    def entry(category: str | None, threshold: timedelta, at: datetime | None) -> Freshness:
        return Freshness(channel=channel, category=category, threshold=threshold, last_live_at=at,
                         age=None if at is None else now - at,
                         status=freshness_status(at, threshold, warn, now))

    out = [entry(None, channel_freshness_threshold(config, channel), newest)]
    out += [entry(key, threshold, found.get(key)) for key, threshold in cats.items()]
    return newest, out


def deadline_risks(conn: Connection, config: Config, now: datetime) -> list[DeadlineRisk]:
    """Revisions not yet live anywhere whose legal deadline is near or past, most urgent first.

    Candidates are revisions still in review (or blocked), and revisions with an open delivery;
    a revision counts as public once any of its deliveries is live."""
    n, warn = config.lag.deadline_working_days, config.lag.deadline_warn_working_days
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
               .where(revisions.c.state == "approved"))
    rows: dict[int, Any] = {}
    for q in (in_review, sending):
        for r in conn.execute(q.where(revisions.c.retract.is_(False))).mappings():
            rows[r["id"]] = r
    out = []
    for r in rows.values():
        start = r["doc_date"] or workdays.local_date(r["created_at"])
        status, at, last_day, left = deadline_risk(start, now, n, warn)
        if status != "ok":
            out.append(DeadlineRisk(item_id=r["item_id"], revision=r["number"], title=r["title"],
                                    category=r["category"], state=r["state"], start=start, last_day=last_day,
                                    deadline=at,
                                    working_days_left=left, status=status,
                                    calendar_known=workdays.known(at.year)))
    return sorted(out, key=lambda d: (d.deadline, d.item_id))


def build_report(store: Store, config: Config, now: datetime, *, channel: str | None = None,
                 since: datetime | None = None, late_limit: int | None = 100) -> LagReport:
    """The whole report: one read transaction, so every number is of the same instant."""
    names = [n for n in config.channels if channel in (None, n)]
    start = since if since is not None else now - config.lag.window
    out: list[ChannelLag] = []
    fresh: list[Freshness] = []
    with store.read() as conn:
        if conn.dialect.name == "postgresql":  # each query reads a few thousand index entries at most:
            conn.exec_driver_sql("SET LOCAL max_parallel_workers_per_gather = 0")  # workers cost more (~10 ms)
        counts = open_counts(conn, names)
        for name in names:
            cfg = config.channels[name]
            ch = ChannelLag(name=name, display=cfg.display(name), type=cfg.type, sla=cfg.sla, counts=counts[name])
            ch.late_total, ch.late = late_deliveries(conn, config, name, now, since=since, limit=late_limit)
            lags = _window(conn, name, start, now)
            ch.window_total = len(lags)
            if lags:
                ch.p50, ch.p95, ch.max = (timedelta(seconds=percentile(lags, q)) for q in (50, 95, 100))
                ch.window_over_sla = len(lags) - _count_at_most(lags, cfg.sla.total_seconds())
            ch.last_live_at, entries = freshness(conn, config, name, now)
            fresh += entries
            out.append(ch)
        risks = deadline_risks(conn, config, now)
    return LagReport(generated_at=now, since=start, channels=out, freshness=fresh, deadlines=risks, config=config)


def _count_at_most(sorted_values: list[float], limit: float) -> int:
    from bisect import bisect_right

    return bisect_right(sorted_values, limit)


# --- lag over time (the dashboard's plot) -----------------------------------------------------------

SPANS = {"24h": (timedelta(hours=24), timedelta(hours=1)), "7d": (timedelta(days=7), timedelta(hours=6)),
         "30d": (timedelta(days=30), timedelta(days=1))}


@dataclass(frozen=True)
class Bucket:
    start: datetime
    count: int
    p95: float | None  # seconds
    max: float | None


def history(store: Store, config: Config, now: datetime, span: str = "24h",
            channels: Iterable[str] | None = None) -> dict[str, list[Bucket]]:
    """Per channel, the deliveries due in each bucket of the span, and their p95 and max lag (seconds)."""
    length, step = SPANS[span]
    n = int(length / step)
    origin = now - n * step
    names = list(channels) if channels is not None else list(config.channels)
    out: dict[str, list[Bucket]] = {}
    with store.read() as conn:
        for name in names:
            slots: list[list[float]] = [[] for _ in range(n)]
            q = _by_due(name, origin, now, elapsed(_at(origin), deliveries.c.due_at), _lag_at(now))
            width = step.total_seconds()
            for offset, lag in conn.execute(q):  # both to the millisecond, from the database
                slots[max(0, min(n - 1, int(float(offset) // width)))].append(float(lag))
            out[name] = [Bucket(start=origin + i * step, count=len(s),
                                p95=percentile(sorted(s), 95) if s else None, max=max(s) if s else None)
                         for i, s in enumerate(slots)]
    return out
