"""The client-side rate limit of each channel: config's `rate_limit`, else the platform's documented one.

Counted from the store (the sends of the last window), so it holds across restarts and across nodes.
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

    def rate(self, name: str) -> Rate | None:
        default = self.channels[name].default_rate_limit
        return self.config.channels[name].rate_limit or (parse_rate(default) if default else None)

    def allowance(self, name: str, now: datetime, concurrency: int) -> int:
        """How many rows of the channel may be claimed now (at most `concurrency`)."""
        rate = self.rate(name)
        if rate is None:
            return concurrency
        recent = self.store.sent_since(name, now - rate.per, rate.count)  # the window's newest `count` sends
        left = rate.count - len(recent)
        free_at = recent[0] + rate.per if left <= 0 else None  # when the oldest of them leaves the window
        self._free_at[name] = free_at
        if free_at is not None:
            log.info("dispatch.rate_limited", channel=name, limit=str(rate), free_at=free_at.isoformat())
        return max(0, min(concurrency, left))

    def free_at(self, name: str, now: datetime) -> datetime | None:
        """When the channel may send again, if its limit is spent at `now` (as of the last allowance)."""
        at = self._free_at.get(name)
        return at if at is not None and at > now else None
