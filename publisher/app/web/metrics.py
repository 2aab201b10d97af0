"""`/metrics` in Prometheus's text format: the lag of each delivery as a histogram, and per channel the
open rows by state, the newest live time, the late count and the SLA as gauges.

The histogram counts each delivery once, when it is seen live (so `rate()` works); the gauges are
read from the store at each scrape. Live rows (the million) are counted by the histogram's `_count`,
so a scrape never counts the whole table. The route (and its token check) is in dashboard.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

from publisher.lag import report as lag
from publisher.store import reads

if TYPE_CHECKING:
    from publisher.app.web.context import WebContext

LAG_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 28800, 86400, 172800, 604800)


class LagMetrics:
    """The collector behind `/metrics`; one per web app, made with the app's context."""

    OVERLAP = timedelta(minutes=5)  # rows committed slightly out of live_at order are still seen, once

    def __init__(self, ctx: WebContext) -> None:
        self.ctx = ctx
        self.registry = CollectorRegistry()
        self.histogram = Histogram("publisher_delivery_lag_seconds", "Time from due to live, per delivery",
                                   ["channel"], buckets=LAG_BUCKETS, registry=self.registry)
        for name in ctx.config.channels:
            self.histogram.labels(channel=name)  # every channel shows, even before its first delivery
        self.registry.register(self)  # a custom collector too: collect() gives the gauges
        self.watermark = ctx.clock.now()
        self.seen: dict[int, datetime] = {}

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

    def collect(self) -> Iterator[GaugeMetricFamily]:
        config, now = self.ctx.config, self.ctx.clock.now()
        states = GaugeMetricFamily("publisher_deliveries", "Delivery rows due and not live, by channel and state",
                                   labels=["channel", "state"])
        last = GaugeMetricFamily("publisher_channel_last_live_timestamp_seconds",
                                 "When an item last went live on the channel (Unix time)", labels=["channel"])
        late = GaugeMetricFamily("publisher_channel_late_deliveries", "Deliveries past the channel's SLA, not live",
                                 labels=["channel"])
        sla = GaugeMetricFamily("publisher_channel_sla_seconds", "The channel's SLA", labels=["channel"])
        with self.ctx.store.read() as conn:
            by_state = reads.open_counts(conn, list(config.channels))
            for name, cfg in config.channels.items():
                for state in lag.OPEN_STATES:
                    states.add_metric([name, state.value], by_state[name].get(state, 0))
                newest, _entries = lag.freshness(conn, config, name, now)
                if newest is not None:
                    last.add_metric([name], newest.timestamp())
                late.add_metric([name], lag.late_deliveries(conn, config, name, now, limit=0)[0])
                sla.add_metric([name], cfg.sla.total_seconds())
        yield from (states, last, late, sla)

    def render(self) -> bytes:
        self.observe_new()
        return generate_latest(self.registry)
