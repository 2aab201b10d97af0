"""What the daemon did since it started, as Prometheus counters and one histogram.

One `Telemetry` per daemon, made once by it and injected: the dispatcher calls it at each send
outcome, read-back and retry and times each adapter call; intake reports each file's outcome through
the callback `intake_file`. `/metrics` (publisher/app/web/metrics.py) exposes it beside the gauges
drawn from the lag report. Every label value comes from a fixed list or from config.yaml's channel
names, never from an item, so the series stay few. Without an injected one, a dispatcher keeps a
private instance that nobody scrapes (the CLI's one-off runs, most tests).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Iterable, Iterator
from typing import TypeVar

from prometheus_client import Counter, Histogram
from prometheus_client.metrics_core import Metric

T = TypeVar("T")

# sent: the channel has it; found: a crashed send had landed (start-up reconciliation); retracted: taken
# down; retry: a transient error, another attempt is scheduled; failed: given up or refused; manual: a
# person must act (the channel's answer says what).
SEND_OUTCOMES = ("sent", "found", "retracted", "retry", "failed", "manual")
READ_BACK_OUTCOMES = ("live", "not_live", "error")  # error: the read-back itself failed
INTAKE_OUTCOMES = ("accepted", "rejected", "duplicate")
OPERATIONS = ("send", "verify")  # send: the publish/update/retract call (with its `find`); verify: a read-back
# From a feed rewrite on the local disk to a slow government portal near its timeout.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class Telemetry:
    """The daemon's event counters; a prometheus_client collector, registered by `/metrics`."""

    def __init__(self, channels: Iterable[str] = ()) -> None:
        # registry=None: each web app registers this object in its own registry, so tests can make many
        self.sends = Counter("publisher_sends", "Delivery send outcomes by channel (sent, found, retracted, "
                             "retry, failed, manual)", ["channel", "outcome"], registry=None)
        self.read_backs = Counter("publisher_read_backs", "Read-backs (is the item visible to readers?) by "
                                  "channel and outcome (live, not_live, error)", ["channel", "outcome"], registry=None)
        self.retries = Counter("publisher_retries_scheduled", "Retries scheduled after a transient error, by channel",
                               ["channel"], registry=None)
        self.intake = Counter("publisher_intake_files", "Item files taken from the inbox, by outcome (accepted, "
                              "rejected, duplicate)", ["outcome"], registry=None)
        self.duration = Histogram("publisher_channel_request_duration_seconds", "Time of each adapter call as the "
                                  "dispatcher sees it, by channel and operation (send, verify)",
                                  ["channel", "operation"], buckets=DURATION_BUCKETS, registry=None)
        # every series exists from the start at 0, so that rate() and increase() see the first event
        for outcome in INTAKE_OUTCOMES:
            self.intake.labels(outcome=outcome)
        for name in channels:
            self.retries.labels(channel=name)
            for outcome in SEND_OUTCOMES:
                self.sends.labels(channel=name, outcome=outcome)
            for outcome in READ_BACK_OUTCOMES:
                self.read_backs.labels(channel=name, outcome=outcome)
            for operation in OPERATIONS:
                self.duration.labels(channel=name, operation=operation)

    def send_outcome(self, channel: str, outcome: str) -> None:
        self.sends.labels(channel=channel, outcome=outcome).inc()

    def retry_scheduled(self, channel: str) -> None:
        """A send ended in a transient error and another attempt is scheduled."""
        self.sends.labels(channel=channel, outcome="retry").inc()
        self.retries.labels(channel=channel).inc()

    def read_back(self, channel: str, outcome: str) -> None:
        self.read_backs.labels(channel=channel, outcome=outcome).inc()

    def intake_file(self, outcome: str) -> None:
        self.intake.labels(outcome=outcome).inc()

    async def timed(self, channel: str, operation: str, call: Awaitable[T]) -> T:
        """Await `call` and record how long it took, also when it raised or was cancelled at its deadline."""
        started = time.perf_counter()  # a duration: the monotonic clock, not the injected (maybe frozen) one
        try:
            return await call
        finally:
            self.duration.labels(channel=channel, operation=operation).observe(time.perf_counter() - started)

    def collect(self) -> Iterator[Metric]:
        for metric in (self.sends, self.read_backs, self.retries, self.intake, self.duration):
            yield from metric.collect()


__all__ = ["Telemetry"]
