"""Looking again at live items on the channels that can take them down after they went live.

A WeChat article can be deleted on the account or banned by the platform after it was published
(publish_status 5, 6). Such a channel's adapter declares `recheck_live` (how often a live item is read back);
each pass reads back the rows that are due, through the adapter's `verify`. A `Refused` answer moves the row
from live to failed, with the channel's words in `last_error` and its live time cleared: the item no longer
counts as public (freshness, lag), the lag report lists it as lost (`lost_at`) and with the failed rows, and the
alerter announces it at its next check, SLA or not (alert kind `lost`), until the item is live there again.
A row still live is looked at again after `recheck_live`; a read-back that fails (the channel unreachable)
leaves it for the next pass. Only the item's current placement on the channel is read back: an older
revision's row, or a retracted item's, is not.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import structlog
from structlog.contextvars import bound_contextvars

from channels.base import Channel, PermanentError, Receipt, Refused, TransientError
from publisher.clock import Clock
from publisher.dispatch import policy
from publisher.dispatch.policy import describe
from publisher.model import TAKEN_DOWN, Delivery
from publisher.store.db import Store

log = structlog.get_logger()
BATCH = 50  # rows read back per channel and pass
EVERY = timedelta(minutes=5)  # between passes of the running daemon
READ_DEADLINE = timedelta(seconds=60)  # one read-back, its retries included


class LiveCheck:
    """The periodic read-back of live rows; `check()` is one pass (the tests call it), `run(stop)` the daemon's loop."""

    def __init__(self, *, store: Store, channels: dict[str, Channel], clock: Clock) -> None:
        self.store, self.clock = store, clock
        self.channels = {name: ch for name, ch in channels.items() if ch.recheck_live is not None}

    async def check(self) -> int:
        """Read back every due live row once; returns how many turned failed."""
        lost = 0
        for name, channel in self.channels.items():
            now = self.clock.now()
            assert channel.recheck_live is not None
            rows = await asyncio.to_thread(self.store.live_to_recheck, name, now, BATCH,
                                           since=now - channel.recheck_live.window)
            for row in rows:
                with bound_contextvars(channel=name, item_id=row.item_id):
                    lost += await self._look(channel, row)
        return lost

    async def _look(self, channel: Channel, row: Delivery) -> int:
        placed = await asyncio.to_thread(self._placement, row)
        try:
            async with policy.bounded(READ_DEADLINE, f"the read-back on {row.channel}"):
                await policy.read(channel.verify, placed, attempts=2)
        except Refused as exc:
            now = self.clock.now()
            message = f"{TAKEN_DOWN}{describe(exc)}"
            with self.store.tx() as conn:
                self.store.live_lost(conn, row.id, now, error=message)
                self.store.audit(conn, now, "daemon", "live_lost", item_id=row.item_id, channel=row.channel,
                                 error=message)
            log.error("delivery.live_lost", error=message)
            return 1
        except (TransientError, PermanentError) as exc:
            log.warning("delivery.recheck_failed", error=str(exc))
            return 0
        assert channel.recheck_live is not None
        with self.store.tx() as conn:
            self.store.rechecked(conn, row.id, self.clock.now() + channel.recheck_live.every)
        return 0

    def _placement(self, row: Delivery) -> Receipt:
        with self.store.read() as conn:
            p = self.store.placement(conn, row.item_id, row.channel)
        if p is None:
            return Receipt(remote_id=row.remote_id or "", url=row.url)
        return Receipt(remote_id=p.remote_id, url=p.url, extra=p.extra or {})

    async def run(self, stop: asyncio.Event) -> None:
        """A pass every few minutes while the daemon runs; a failing pass is logged, never fatal."""
        # with several nodes on one PostgreSQL store, one of them looks at a time
        await self.store.lead_every("publisher.livecheck", EVERY, self.check, stop, failed="livecheck.failed")


__all__ = ["LiveCheck"]
