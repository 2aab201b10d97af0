"""The client-side rate limit of each channel: config's `rate_limit`, else the platform's documented one.

Counted from the store (the sends of the last window), so it holds across restarts and across nodes, plus
this node's requests that the channel refused (a 429 sent nothing, yet it was a request the limit counts).
"""

from __future__ import annotations

from datetime import datetime

import structlog

from channels.base import Channel
from publisher.config.settings import Config
from publisher.store.db import Store
from publisher.units import Rate, parse_rate

log = structlog.get_logger()


class RateLimits:
    def __init__(self, store: Store, config: Config, channels: dict[str, Channel]) -> None:
        self.store = store
        self.config = config
        self.channels = channels
        self._free_at: dict[str, datetime | None] = {}
        self._refused: dict[str, list[datetime]] = {name: [] for name in channels}

    def refused(self, name: str, at: datetime) -> None:
        """A send that reached the channel and did not end as sent (refused, rate limited, timed out)."""
        self._refused[name].append(at)

    def rate(self, name: str) -> Rate | None:
        default = self.channels[name].default_rate_limit
        return self.config.channels[name].rate_limit or (parse_rate(default) if default else None)

    def allowance(self, name: str, now: datetime, concurrency: int, in_flight: int = 0) -> int:
        """How many rows of the channel may be claimed to send now (at most `concurrency`), `in_flight` of its sends
        being on their way (they count against the limit before they show up as sent in the store)."""
        rate = self.rate(name)
        if rate is None:
            return concurrency
        since = now - rate.per
        self._refused[name] = refused = [at for at in self._refused[name] if at >= since]
        # the window's newest `count` requests: sends recorded in the store, and refusals seen here
        recent = sorted(self.store.sent_since(name, since, rate.count) + refused)[-rate.count:]
        left = rate.count - len(recent)
        free_at = recent[0] + rate.per if left <= 0 else None  # when the oldest of them leaves the window
        self._free_at[name] = free_at
        if free_at is not None:
            log.info("dispatch.rate_limited", channel=name, limit=str(rate), free_at=free_at.isoformat())
        return max(0, min(concurrency, left - in_flight))

    def free_at(self, name: str, now: datetime) -> datetime | None:
        """When the channel may send again, if its limit is spent at `now` (as of the last allowance)."""
        at = self._free_at.get(name)
        return at if at is not None and at > now else None
