"""`/metrics` in Prometheus's text format. Three sources, kept apart:

- the lag histogram: the lag of each delivery, counted once when it is seen live (so `rate()` works).
  Live rows (the million) are counted by the histogram's `_count`, so a scrape never counts the table;
- the daemon's counters (publisher/dispatch/telemetry.py): sends, read-backs, adapter call durations,
  retries, intake files, when the daemon injected its `Telemetry` into the web context;
- gauges drawn from a `LagReport` (`report_families`, a pure function of the report, whichever process
  or cache computed it) and from the review queue (`review_families`), read at each scrape.

Names follow Prometheus's conventions (base units, `_total` counters, `_seconds`, `_timestamp_seconds`),
and every label value is a configured channel, category or role or a fixed word: never an item.
The route (and its token check) is in dashboard.py; deploy/prometheus/ holds the alert rules written
against these names, deploy/grafana/ the dashboard.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from publisher.lag import report as lag
from publisher.model import RevisionState
from publisher.review.chain import Review, Waiting
from publisher.store import reads

if TYPE_CHECKING:
    from publisher.app.web.context import WebContext

LAG_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 28800, 86400, 172800, 604800)
DEADLINE_STATUSES = ("at_risk", "overdue")


def report_families(report: lag.LagReport) -> list[Metric]:
    """The gauges a lag report gives, per channel and per category; the same report gives the same families.

    Ages are as of `report.generated_at`; `publisher_lag_report_age_seconds` says how old that is.
    `category=""` is the channel as a whole (Prometheus reads an empty label as no label)."""
    states = GaugeMetricFamily("publisher_deliveries", "Delivery rows due and not live, by channel and state",
                               labels=["channel", "state"])
    last = GaugeMetricFamily("publisher_channel_last_live_timestamp_seconds",
                             "When an item last went live on the channel (Unix time)", labels=["channel"])
    late = GaugeMetricFamily("publisher_channel_late_deliveries", "Deliveries past the channel's SLA, not live",
                             labels=["channel"])
    lost = GaugeMetricFamily("publisher_channel_lost_deliveries", "Deliveries the channel took down after they "
                             "went live (deleted, banned), the item not live there again", labels=["channel"])
    sla = GaugeMetricFamily("publisher_channel_sla_seconds", "The channel's SLA", labels=["channel"])
    age = GaugeMetricFamily("publisher_freshness_age_seconds", "Time since an item (not a retraction) last "
                            "went live on the channel, or in the category on it", labels=["channel", "category"])
    threshold = GaugeMetricFamily("publisher_freshness_threshold_seconds", "The inspection threshold the "
                                  "freshness age is held against", labels=["channel", "category"])
    deadlines = GaugeMetricFamily("publisher_legal_deadline_revisions", "Revisions not yet public whose legal "
                                  "deadline is near (at_risk) or past (overdue)", labels=["status"])
    for ch in report.channels:
        for state in lag.OPEN_STATES:
            states.add_metric([ch.name, state.value], ch.counts.get(state, 0))
        if ch.last_live_at is not None:
            last.add_metric([ch.name], ch.last_live_at.timestamp())
        late.add_metric([ch.name], ch.late_total)
        lost.add_metric([ch.name], len(ch.lost))
        sla.add_metric([ch.name], ch.sla.total_seconds())
    for f in report.freshness:
        labels = [f.channel, f.category or ""]
        if f.age is not None:  # never live there: no age, and no staleness alert before the first item
            age.add_metric(labels, f.age.total_seconds())
        threshold.add_metric(labels, f.threshold.total_seconds())
    for status in DEADLINE_STATUSES:
        deadlines.add_metric([status], sum(1 for d in report.deadlines if d.status == status))
    sources = GaugeMetricFamily("publisher_source_last_success_timestamp_seconds", "When the district source's "
                                "feed was last read (Unix time; a 304 counts)", labels=["source"])
    for src in report.sources:
        if src.last_success_at is not None:  # never read: no gauge, as for a channel never live
            sources.add_metric([src.key], src.last_success_at.timestamp())
    return [states, last, late, lost, sla, age, threshold, deadlines, sources]


def report_age(report: lag.LagReport, scraped_at: datetime) -> Metric:
    """How old the report is at the scrape: 0 for one computed during it (its instant is after `scraped_at`)."""
    return GaugeMetricFamily("publisher_lag_report_age_seconds", "Time since the lag report behind the "
                             "gauges was computed", value=max(0.0, (scraped_at - report.generated_at).total_seconds()))


def review_families(waiting: Iterable[Waiting], roles: Iterable[str]) -> list[Metric]:
    """The review queue: revisions waiting per next role (each configured role shows, 0 when none), and
    those blocked by the confidentiality screen, which wait for an override rather than a role."""
    per_role = dict.fromkeys(roles, 0)
    blocked = 0
    for w in waiting:
        if w.state == RevisionState.BLOCKED:
            blocked += 1
        else:
            role = w.next_role or ""  # a chain changed under a revision: it waits for nobody configured
            per_role[role] = per_role.get(role, 0) + 1
    queue = GaugeMetricFamily("publisher_review_waiting_revisions", "Revisions in review, by the role whose "
                              "sign-off each needs next", labels=["role"])
    for role, n in per_role.items():
        queue.add_metric([role], n)
    held = GaugeMetricFamily("publisher_review_blocked_revisions", "Revisions the confidentiality screen "
                             "blocked, waiting for an override", value=blocked)
    return [queue, held]


class LagMetrics:
    """The collector behind `/metrics`; one per web app, made with the app's context.

    Each scrape hands `render` the lag report behind the gauges (the web doors' copy, see
    publisher/app/reports.py); `publisher_lag_report_age_seconds` shows how old it is (from its
    `generated_at`)."""

    OVERLAP = timedelta(minutes=5)  # rows committed slightly out of live_at order are still seen, once

    def __init__(self, ctx: WebContext) -> None:
        self.ctx = ctx
        self.report: lag.LagReport | None = None  # the one the scrape in progress shows
        self._scrape = threading.Lock()  # scrapes run in worker threads: one at a time
        self.review = Review(ctx.store, ctx.config, ctx.clock)
        self.registry = CollectorRegistry()
        self.histogram = Histogram("publisher_delivery_lag_seconds", "Time from due to live, per delivery",
                                   ["channel"], buckets=LAG_BUCKETS, registry=self.registry)
        for name in ctx.config.channels:
            self.histogram.labels(channel=name)  # every channel shows, even before its first delivery
        if ctx.telemetry is not None:
            self.registry.register(ctx.telemetry)
        self.registry.register(self)  # a custom collector too: collect() gives the gauges
        self.watermark = ctx.clock.now()
        self.seen: dict[int, datetime] = {}

    def describe(self) -> list[Metric]:
        return []  # the families depend on the report: none is built when the collector is registered

    def observe_new(self) -> None:
        """Count into the histogram each row that went live since the last scrape, once."""
        since = self.watermark - self.OVERLAP
        rows: list[tuple[int, str, datetime, datetime]] = []
        with self.ctx.store.read() as conn:
            for name in self.ctx.config.channels:
                rows += reads.newly_live(conn, name, since)
        for rid, channel, due, live in rows:
            if rid in self.seen:
                continue
            self.seen[rid] = live
            self.histogram.labels(channel=channel).observe(max(0.0, (live - due).total_seconds()))
            self.watermark = max(self.watermark, live)
        floor = self.watermark - self.OVERLAP
        self.seen = {k: v for k, v in self.seen.items() if v > floor}

    def collect(self) -> Iterator[Metric]:
        report = self.report
        if report is None:
            return
        yield report_age(report, self.ctx.clock.now())
        yield from report_families(report)
        yield from review_families(self.review.waiting(), self.ctx.config.roles)

    def render(self, report: lag.LagReport) -> bytes:
        """The exposition for one scrape, with `report` behind the gauges."""
        with self._scrape:
            return self._render(report)

    def _render(self, report: lag.LagReport) -> bytes:
        self.report = report
        try:
            self.observe_new()
            return generate_latest(self.registry)
        finally:
            self.report = None
