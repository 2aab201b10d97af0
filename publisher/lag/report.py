"""The lag model: how far behind each channel is, read from the store at an instant the caller gives.

Every function takes `now` (from the injected Clock), so each rule is tested standing exactly on
its boundary. Definitions (docs/LAG_JSON.md is the public contract):

- lag of a delivery = (live_at, or now while not live) − due_at; superseded rows are ignored;
- a delivery is **late** when it is not live and now − due_at > the channel's SLA;
- a delivery is **lost** when the channel took it down after it went live (deleted there, banned) and the
  item has not gone live there again since;
- freshness: the time since the newest item (not a retraction) went live on a channel, and per
  category on it, against a threshold; "warning" from `lag.freshness_warn_before` ahead of it;
- the legal deadline: a revision must be live somewhere by the end of the N-th working day
  (`lag.deadline_working_days`) after its document date, or after the day it was made.

The statements behind it are in publisher/store/reads.py (with the indexes they rely on and why
they are shaped so); this module keeps the rules and assembles the report from what they return.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING

from publisher.config.settings import Config
from publisher.lag import workdays
from publisher.model import OPEN, DeliveryState, RevisionState
from publisher.store import reads

if TYPE_CHECKING:
    from publisher.store.db import Store
    from publisher.store.reads import Connection
    from publisher.store.sources import SourceState

# The open states (due and not live) in their lifecycle order: the order of the JSON's and /metrics' counts.
OPEN_STATES = tuple(state for state in DeliveryState if state in OPEN)


@dataclass(frozen=True)
class LateDelivery(reads.LateRow):
    """A late delivery as the report shows it: the store's row, its channel, and how late it is."""

    channel: str
    lag: timedelta
    over_sla: timedelta


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
    state: RevisionState  # the revision's: review, blocked or approved
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
    counts: dict[DeliveryState, int] = field(default_factory=dict)
    late_total: int = 0
    late: list[LateDelivery] = field(default_factory=list)
    window_total: int = 0
    window_over_sla: int = 0  # due in the window and live (or still not) later than the SLA
    p50: timedelta | None = None
    p95: timedelta | None = None
    max: timedelta | None = None
    last_live_at: datetime | None = None
    lost: list[reads.LostRow] = field(default_factory=list)  # taken down after they went live, not live again

    @property
    def status(self) -> str:
        return "late" if self.late_total else "on_time"


@dataclass(frozen=True)
class SourceStatus:
    """A district source as the report shows it: its last polls, and whether it has been silent too long."""

    key: str
    district: str
    url: str
    category: str
    interval: timedelta
    silent_after: timedelta  # interval × lag.source_silent_intervals
    last_attempt_at: datetime | None
    last_success_at: datetime | None
    last_error_at: datetime | None
    last_error: str | None
    entries: int  # in the feed at the last good read
    imported: int  # items its entries made, ever
    last_import_at: datetime | None
    status: str  # ok | error (the last poll failed) | silent (no good poll for silent_after) | never (not polled yet)


@dataclass
class ReviewSection:
    """The review queue as the lag report counts it: revisions waiting, those the screen holds, and the
    screen's findings on them by level and by kind (publisher/review/screen.py names the kinds)."""

    waiting: int = 0  # in review or blocked
    blocked: int = 0
    with_findings: int = 0  # waiting revisions with at least one finding
    blocking: int = 0  # findings that hold their revision until an override
    advisory: int = 0  # findings shown to the reviewers that hold nothing
    kinds: dict[str, int] = field(default_factory=dict)


@dataclass
class LagReport:
    generated_at: datetime
    since: datetime
    channels: list[ChannelLag]
    freshness: list[Freshness]
    deadlines: list[DeadlineRisk]
    config: Config = field(repr=False)
    review: ReviewSection = field(default_factory=ReviewSection)
    sources: list[SourceStatus] = field(default_factory=list)


# --- pure rules ------------------------------------------------------------------------------------

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


# --- assembled from the store's reads ---------------------------------------------------------------

def late_deliveries(conn: Connection, config: Config, channel: str, now: datetime, *,
                    since: datetime | None = None, limit: int | None = 100) -> tuple[int, list[LateDelivery]]:
    """(how many, the oldest `limit` of them) late deliveries of one channel, oldest first."""
    sla = config.channels[channel].sla
    total = reads.late_count(conn, channel, now - sla, since)
    if not total or limit == 0:
        return total, []
    rows = [LateDelivery(**{f.name: getattr(r, f.name) for f in fields(r)}, channel=channel,
                         lag=now - r.due_at, over_sla=now - r.due_at - sla)
            for r in reads.late_rows(conn, channel, now - sla, since, limit=limit)]
    return total, rows


def freshness(conn: Connection, config: Config, channel: str, now: datetime) -> tuple[datetime | None, list[Freshness]]:
    """The channel's newest live time, and its freshness entries (the channel first, then each routed category)."""
    warn = config.lag.freshness_warn_before
    cats = {key: config.categories[key].freshness for key in routed_categories(config, channel)}
    newest, found = reads.newest_live(conn, channel, cats, now)

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
    out = []
    for r in reads.deadline_candidates(conn):
        start = r.doc_date or workdays.local_date(r.created_at)
        status, at, last_day, left = deadline_risk(start, now, n, warn)
        if status != "ok":
            out.append(DeadlineRisk(item_id=r.item_id, revision=r.number, title=r.title, category=r.category,
                                    state=r.state, start=start, last_day=last_day, deadline=at,
                                    working_days_left=left, status=status,
                                    calendar_known=workdays.known(at.year)))
    return sorted(out, key=lambda d: (d.deadline, d.item_id))


def review_section(conn: Connection) -> ReviewSection:
    """Revisions waiting for review, and the screen's findings on them (a finding stored before levels
    existed is blocking, as it was then)."""
    out = ReviewSection()
    for state, findings in reads.review_findings(conn):
        out.waiting += 1
        out.blocked += state == RevisionState.BLOCKED
        out.with_findings += bool(findings)
        for f in findings:
            if f.get("level", "blocking") == "advisory":
                out.advisory += 1
            else:
                out.blocking += 1
            kind = str(f.get("kind", "unknown"))
            out.kinds[kind] = out.kinds.get(kind, 0) + 1
    out.kinds = dict(sorted(out.kinds.items()))
    return out


def build_report(store: Store, config: Config, now: datetime, *, channel: str | None = None,
                 since: datetime | None = None, late_limit: int | None = 100) -> LagReport:
    """The whole report: one read transaction, so every number is of the same instant."""
    names = [n for n in config.channels if channel in (None, n)]
    start = since if since is not None else now - config.lag.window
    out: list[ChannelLag] = []
    fresh: list[Freshness] = []
    with reads.report_snapshot(store) as conn:
        counts = reads.open_counts(conn, names)
        for name in names:
            cfg = config.channels[name]
            ch = ChannelLag(name=name, display=cfg.display(name), type=cfg.type, sla=cfg.sla, counts=counts[name])
            ch.late_total, ch.late = late_deliveries(conn, config, name, now, since=since, limit=late_limit)
            ch.lost = reads.lost_rows(conn, name)
            lags = reads.window_lags(conn, name, start, now)
            ch.window_total = len(lags)
            if lags:
                ch.p50, ch.p95, ch.max = (timedelta(seconds=percentile(lags, q)) for q in (50, 95, 100))
                ch.window_over_sla = len(lags) - bisect_right(lags, cfg.sla.total_seconds())
            ch.last_live_at, entries = freshness(conn, config, name, now)
            fresh += entries
            out.append(ch)
        risks = deadline_risks(conn, config, now)
        sources = source_statuses(config, store.source_states(conn), now) if config.sources else []
        review = review_section(conn)
    return LagReport(generated_at=now, since=start, channels=out, freshness=fresh, deadlines=risks, config=config,
                     review=review, sources=sources)


def source_statuses(config: Config, states: dict[str, SourceState], now: datetime) -> list[SourceStatus]:
    """Each enabled source's status. Silent: no good poll for interval × N since the last good one (or,
    for a feed never read, since the first try); a source not tried yet is `never`, not silent."""
    out = []
    for key, src in config.sources.items():
        if not src.enabled:
            continue
        st = states.get(key)
        limit = src.interval * config.lag.source_silent_intervals
        since = None if st is None else st.last_success_at or st.created_at
        if st is None or st.last_attempt_at is None:
            status = "never"
        elif since is not None and now - since > limit:
            status = "silent"
        elif st.last_error_at is not None and (st.last_success_at is None or st.last_error_at > st.last_success_at):
            status = "error"
        else:
            status = "ok"
        out.append(SourceStatus(
            key=key, district=src.district, url=src.url, category=src.category, interval=src.interval, silent_after=limit,
            last_attempt_at=st.last_attempt_at if st else None, last_success_at=st.last_success_at if st else None,
            last_error_at=st.last_error_at if st else None, last_error=st.last_error if st else None,
            entries=st.entries if st else 0, imported=st.imported if st else 0,
            last_import_at=st.last_import_at if st else None, status=status))
    return out


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
            width = step.total_seconds()
            for offset, lag in reads.lags_by_offset(conn, name, origin, now):
                slots[max(0, min(n - 1, int(offset // width)))].append(lag)
            out[name] = [Bucket(start=origin + i * step, count=len(s),
                                p95=percentile(sorted(s), 95) if s else None, max=max(s) if s else None)
                         for i, s in enumerate(slots)]
    return out
