"""The dispatcher: the outbox worker. It owns every delivery's bookkeeping.

Per channel, one worker claims due rows (a lease in the store), sends them through the adapter with at most
`concurrency` in flight, and records each outcome (sent rows in a group commit: publisher/dispatch/batch.py; the
loop never sleeps on SQLite's lock: `write_soon`). A slow or dead channel only holds its own worker. Exactly-once:

1. A row is `sending` from the claim until its outcome is stored; at start-up every such row
   is reconciled through the adapter's `find` before anything is sent again (where `find` cannot
   tell, as for e-mail, the row fails for a person to check: it is never sent again unasked).
2. A create is retried only after `find` said the item is not there (or with the same
   idempotency key, which the adapters send where the protocol has one). A `find` that cannot tell
   yet (a TransientError) makes the row retry later, never create; the checkpoints an adapter made
   mid-send (channels.base.Progress) are on the row, and `find` resumes from them.
3. The receipt, the row's new state and the item's placement on the channel commit together.

An adapter call is bounded by a deadline below the claim's lease (publisher/dispatch/policy.py), and
an exception an adapter was not meant to raise is a defect: the row fails at once, never retried.

A lease names its process (`HOST:PID`): several daemons may run on one host against one store, and a
starting daemon reconciles only the rows of a process that is gone (or whose lease ran out), never
those a live sibling has in flight.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from dataclasses import replace
from datetime import datetime, timedelta
from functools import partial

import structlog
from sqlalchemy.exc import DBAPIError
from structlog.contextvars import bound_contextvars

from channels.base import Channel, ManualTask, PermanentError, Receipt, Refused, TransientError, tracking
from publisher.clock import Clock
from publisher.config.settings import Config
from publisher.dispatch import policy
from publisher.dispatch.batch import SentBatch
from publisher.dispatch.leases import node_owner, orphaned
from publisher.dispatch.outbox import requeue
from publisher.dispatch.outcomes import Bookkeeper
from publisher.dispatch.policy import Deadlines, describe
from publisher.dispatch.ratelimit import RateLimits
from publisher.dispatch.telemetry import Telemetry
from publisher.model import Delivery, DeliveryState, IllegalTransition, Revision
from publisher.store.db import Store, write_soon

log = structlog.get_logger()


class Dispatcher:
    def __init__(self, *, store: Store, config: Config, channels: dict[str, Channel], clock: Clock,
                 owner: str | None = None, rng: random.Random | None = None, read_retries: int = 3,
                 lease_slack: timedelta = policy.LEASE_SLACK, telemetry: Telemetry | None = None) -> None:
        self.store, self.config, self.channels, self.clock = store, config, channels, clock
        self.owner, self.rng = owner or node_owner(), rng or random.Random()
        self.read_retries, self.lease_slack = read_retries, lease_slack
        self.telemetry = telemetry or Telemetry(channels)
        self._wake = {name: asyncio.Event() for name in channels}
        self.books = Bookkeeper(store=store, config=config, clock=clock, telemetry=self.telemetry, rng=self.rng,
                                wake=self.wake)
        self.batch = SentBatch(self.books)
        self.limits = RateLimits(store, config, channels)
        self._reap_at: dict[str, datetime] = {}  # when each worker next looks for rows past their lease
        self.workers: dict[str, asyncio.Task[None]] = {}  # one per channel while `run` runs (/healthz looks)

    # --- public ----------------------------------------------------------------------------------

    def wake(self, channel: str | None = None) -> None:
        for name, event in self._wake.items():
            if channel is None or name == channel:
                event.set()

    def wake_due(self) -> None:
        """Wake the workers that have rows they may take now: another process changed the store."""
        now = self.clock.now()
        for name, event in self._wake.items():
            if not event.is_set() and (nxt := self._next_work(name, now)) is not None and nxt <= now:
                event.set()

    async def recover(self) -> int:
        """Reconcile rows left `sending` by a crash: ask the channel before anything is re-sent. Rows a live
        process of this host has in flight (another daemon on the same store) are left to it."""
        now = self.clock.now()
        host = self.owner.rpartition(":")[0] or self.owner
        rows = [r for r in self.store.stale_sending(now, host=host) if orphaned(r, now, self.owner)]
        for row in rows:
            with bound_contextvars(channel=row.channel, item_id=row.item_id):
                try:
                    await self._reconcile(row)
                except IllegalTransition as exc:  # another node reconciled it first
                    log.warning("dispatch.outcome_stale", error=str(exc))
        return len(rows)

    async def run_once(self) -> None:
        """Send and verify everything due now, then return (the tests' and `run --once`'s mode)."""
        await self.recover()
        while True:
            handled = await asyncio.gather(*(self._drain(name) for name in self.channels))
            if not any(handled):  # a send may have released rows of another channel (link_from)
                return

    async def run(self, stop: asyncio.Event) -> None:
        await self.recover()
        self.workers = {name: asyncio.create_task(self._worker(name, stop), name=f"dispatch:{name}")
                        for name in self.channels}
        workers = list(self.workers.values())
        await stop.wait()
        self.wake()
        # Sends in flight get a moment, then are cancelled (their rows stay `sending`: the next start asks `find`).
        _done, slow = await asyncio.wait(workers, timeout=policy.SHUTDOWN_GRACE.total_seconds())
        for task in slow:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        self.batch.flush()

    def retry(self, item_id: str, channel: str | None = None, *, by: str) -> int:
        """Put an item's failed deliveries (or one channel's) back in the queue, now."""
        n = requeue(self.store, self.config, self.clock.now(), item_id, channel, by=by)
        self.wake(channel)
        return n

    def deadlines(self, name: str) -> Deadlines:
        return Deadlines(self.config.channels[name].timeout, self.lease_slack)

    # --- the per-channel loop --------------------------------------------------------------------

    async def _worker(self, name: str, stop: asyncio.Event) -> None:
        event = self._wake[name]
        failures = 0
        while not stop.is_set():
            event.clear()
            try:
                await self._reap(name)
                await self._drain(name, stop)
                timeout = self._idle_timeout(name)
                if failures:
                    log.info("dispatch.worker_recovered", channel=name, failures=failures)
                failures = 0
            except Exception as exc:  # the store went away; keep the worker alive, look again after a backoff
                failures += 1
                timeout = policy.worker_backoff(failures, self.rng)
                log.error("dispatch.worker_error", channel=name, failures=failures, retry_in_s=round(timeout, 2),
                          error=f"{type(exc).__name__}: {exc}"[:500], exc_info=failures == 1)
            try:
                await asyncio.wait_for(event.wait(), timeout)
            except TimeoutError:
                pass

    async def _reap(self, name: str) -> None:
        """Reconcile the channel's rows left `sending` past their lease while the daemon runs (an outcome
        the store did not take, another node that died): through `find`, exactly as at start-up."""
        now = self.clock.now()
        if now < self._reap_at.get(name, now):
            return
        self._reap_at[name] = now + self.deadlines(name).lease
        for row in self.store.stale_sending(now, channel=name):
            with bound_contextvars(channel=row.channel, item_id=row.item_id):
                log.warning("dispatch.lease_expired", lease_owner=row.lease_owner)
                try:
                    await self._reconcile(row)
                except IllegalTransition as exc:  # another node reconciled it first
                    log.warning("dispatch.outcome_stale", error=str(exc))

    def _idle_timeout(self, name: str) -> float:
        now = self.clock.now()
        nxt = self._next_work(name, now)
        reap = self._reap_at.get(name)
        nxt = min(nxt, reap) if nxt is not None and reap is not None else nxt or reap
        if nxt is None:
            return 30.0
        return min(30.0, max(0.01, (nxt - now).total_seconds()))

    def _next_work(self, name: str, now: datetime) -> datetime | None:
        """When the channel's worker next may work: while the rate limit is spent, read-backs and the limit's end."""
        free_at = self.limits.free_at(name, now)
        nxt = self.store.next_due(name, send=free_at is None)
        if free_at is not None:
            nxt = min(nxt, free_at) if nxt is not None else free_at
        return nxt

    async def _drain(self, name: str, stop: asyncio.Event | None = None) -> int:
        """Work the channel's due rows, `concurrency` at a time, until none is left; returns how many were claimed.
        Each of `concurrency` slots takes the next claimed row as soon as its last one is done; a slot that finds none
        claims up to `CLAIM_AHEAD × concurrency` (one slot at a time). A claimed row is `sending` (leased) until its
        outcome is stored, started or not; rows never started when the daemon stops go back (`unclaim`)."""
        cfg = self.config.channels[name]
        lease, ahead = self.deadlines(name).lease, policy.CLAIM_AHEAD * cfg.concurrency
        ready: deque[Delivery] = deque()
        claiming, finished = asyncio.Lock(), asyncio.Event()
        handled = sending = busy = done = 0
        empty_at = -1  # `done` when a claim last came back empty: another claim only once a row has finished since

        async def claimed() -> bool:  # rows are ready (this slot claimed them, or another did meanwhile)
            nonlocal handled, empty_at
            async with claiming:
                if not ready and empty_at != done and not (stop is not None and stop.is_set()):
                    # sends in flight or awaiting the group commit count against the rate limit; read-backs go on
                    allowed = self.limits.allowance(name, self.clock.now(), ahead, sending + self.batch.pending(name))
                    rows = await write_soon(partial(self.store.claim, name, self.owner, self.clock.now(),
                                                    min(ahead, max(allowed, 1)), lease, send=allowed > 0))
                    self.books.prefetch([r for r in rows if r.state != DeliveryState.SENT])
                    ready.extend(rows)
                    handled += len(rows)
                    empty_at = empty_at if rows else done
                return bool(ready)

        async def slot() -> None:  # with nothing to claim, a slot waits for a row in flight to finish, then looks again
            nonlocal sending, busy, done
            while not (stop is not None and stop.is_set()):
                if not ready and not await claimed():
                    if not busy:
                        break
                    finished.clear()
                    await finished.wait()
                    continue
                if (row := self._started(ready.popleft())) is None:
                    continue
                send = row.state != DeliveryState.SENT
                busy, sending = busy + 1, sending + send
                try:
                    await self._handle(row)
                finally:
                    busy, sending, done = busy - 1, sending - send, done + 1
                    finished.set()
            self._unclaim(ready)
            finished.set()  # the waiting slots look again: nothing in flight and nothing to claim ends them too

        slots = [asyncio.create_task(slot()) for _ in range(cfg.concurrency)]
        try:
            ended = await asyncio.gather(*slots, return_exceptions=True)
        except asyncio.CancelledError:  # the daemon is stopping: its rows' calls go with it
            for task in slots:
                task.cancel()
            await asyncio.gather(*slots, return_exceptions=True)
            self._unclaim(ready)
            raise
        self._unclaim(ready)
        self.batch.flush(wait=False)  # nothing in flight: what was sent commits now, not after the batch's wait
        for failed in ended:  # a claim the store refused (the other slots went on while it could)
            if isinstance(failed, BaseException):
                raise failed
        return handled

    def _started(self, row: Delivery) -> Delivery | None:
        """A claimed row whose call starts now. If its call could outlast the claim's lease (it waited while calls ran
        long), the lease is renewed first; if the lease is no longer ours (another node took the row), it is not sent."""
        now, deadlines = self.clock.now(), self.deadlines(row.channel)
        if row.lease_until is None or now + deadlines.call <= row.lease_until:
            return row
        until = now + deadlines.lease
        if self.store.renew(row, self.owner, now, until):
            return replace(row, lease_until=until)
        log.warning("dispatch.lease_lost", channel=row.channel, item_id=row.item_id, lease_until=str(row.lease_until))
        self.books.forget(row)
        return None

    def _unclaim(self, ready: deque[Delivery]) -> None:
        rows = list(ready)
        ready.clear()
        for row in rows:
            self.books.forget(row)
        try:
            self.store.unclaim(rows, self.owner, self.clock.now())
        except DBAPIError:  # the store is away: the leases run out, and the rows are reconciled through `find`
            log.exception("dispatch.store_error")

    # --- one row ------------------------------------------------------------------------------------

    async def _handle(self, row: Delivery) -> None:
        # bound for this row alone (its slot takes the next row after): every log line of it, the adapter's too
        with bound_contextvars(channel=row.channel, item_id=row.item_id):
            try:
                if row.state == DeliveryState.SENT:
                    await self._verify(row)
                else:
                    await self._send(row)
            except IllegalTransition as exc:  # the row moved on meanwhile (a person's retry): this outcome is stale
                log.warning("dispatch.outcome_stale", error=str(exc))
            except DBAPIError:  # the store, not the row: the lease runs out and the row is taken again
                log.exception("dispatch.store_error")
            except Exception as exc:  # a defect (the adapter's, or ours): fail the row now, never retry it
                self.books.defect(row, exc)
            finally:
                self.books.forget(row)

    async def _send(self, row: Delivery) -> None:
        placed = self.books.placement(row)
        rev = None if row.retract else self.books.revision(row)
        if rev is None and not row.retract:
            return  # _revision has already failed the row (no upstream link)
        try:  # past the deadline the call is cancelled: the next attempt of a create asks `find` first
            async with policy.bounded(self.deadlines(row.channel).call, f"the call to {row.channel}"):
                with tracking(self.books.progress(row)):  # the adapter's checkpoints land on the row
                    receipt = await self.telemetry.timed(row.channel, "send", self._call_channel(row, placed, rev))
        except ManualTask as exc:
            self.books.manual(row, exc)
            return
        except (TransientError, PermanentError) as exc:
            self.limits.refused(row.channel, self.clock.now())  # it went over the wire: it counts against the limit
            if isinstance(exc, TransientError):
                self.books.transient(row, exc)
            else:
                self.books.permanent(row, describe(exc))
            return
        if row.retract or receipt is None or rev is None:
            self.books.succeeded(row, receipt, retract=row.retract)
        else:  # recorded with the sends finishing about now; the slot is free meanwhile (the row stays `sending`)
            self.batch.sent(row, receipt, rev)

    async def _call_channel(self, row: Delivery, placed: Receipt | None, rev: Revision | None) -> Receipt | None:
        """The one adapter call this row needs: retract, update what is there, or create (after `find`)."""
        channel = self.channels[row.channel]
        if row.retract:
            if placed is not None:
                await channel.retract(placed)
            return placed
        assert rev is not None
        if placed is not None:
            return await channel.update(rev, placed)
        if row.attempts > 1:  # an earlier attempt may have landed: never post twice
            found = await policy.read(channel.find, rev, attempts=self.read_retries)
            if found is not None:
                log.info("dispatch.found_earlier")
                return found
        return await channel.publish(rev)

    async def _reconcile(self, row: Delivery) -> None:
        channel, now = self.channels.get(row.channel), self.clock.now()
        found: Receipt | None = None
        if channel is not None and not channel.can_find:  # it may have arrived and nothing can tell: a person looks
            self.books.permanent(row, policy.unaccounted(row, channel, None if row.retract else self.books.revision(row)))
            return
        if channel is not None and not row.retract and self.books.placement(row) is None:
            rev = self.books.revision(row)
            if rev is None:
                return
            try:
                async with policy.bounded(self.deadlines(row.channel).call, f"the search on {row.channel}"):
                    with tracking(self.books.progress(row)):  # `find` resumes from the interrupted send's checkpoint
                        found = await policy.read(channel.find, rev, attempts=self.read_retries)
            except (TransientError, PermanentError) as exc:
                log.warning("dispatch.reconcile_unknown", error=str(exc))
        if found is not None:
            self.books.succeeded(row, found, reconciled=True)
            return
        with self.store.tx() as conn:
            # Not there (or an update/retraction, which repeat safely): send it again; attempts > 1 keeps `find`
            # first. A newer row of the item (an edit, a retraction) made meanwhile takes over instead.
            state = self.store.back_to_pending(conn, row.id, now)
            self.store.audit(conn, now, "daemon", "reconcile", item_id=row.item_id, channel=row.channel,
                             outcome="not_found", then=state.value)
        log.info("dispatch.reconciled", found=False, then=state.value)

    async def _verify(self, row: Delivery) -> None:
        channel = self.channels[row.channel]
        placed = self.books.placement(row)
        receipt = (placed if placed is not None and placed.remote_id == row.remote_id
                   else Receipt(remote_id=row.remote_id or "", url=row.url))
        error = None
        try:
            async with policy.bounded(self.deadlines(row.channel).call, f"the read-back on {row.channel}"):
                reading = policy.read(channel.verify, receipt, attempts=self.read_retries)
                live = await self.telemetry.timed(row.channel, "verify", reading)
        except Refused as exc:  # the channel will never show it (a platform's review refused it): a person looks
            self.telemetry.read_back(row.channel, "error")
            self.books.permanent(row, describe(exc))
            return
        except (TransientError, PermanentError) as exc:
            live, error = False, f"verification failed: {exc}"
        self.telemetry.read_back(row.channel, "live" if live else "error" if error else "not_live")
        now = self.clock.now()
        if live:
            where = live if isinstance(live, Receipt) else None  # a channel that learns the item's URL only now
            with self.store.tx() as conn:
                self.store.mark_live(conn, row.id, now, url=where.url if where else None)
                released = self.books.went_live(conn, row, where, now) if where else []
            log.info("delivery.live", lag_s=round((now - row.due_at).total_seconds(), 3))
            for name in released:
                self.wake(name)
            return
        with self.store.tx() as conn:
            n = row.verify_attempts + 1
            if n == policy.RESEND_AFTER_CHECKS and row.attempts < 2 and not row.retract and channel.can_update:
                # Sent but never seen (say, a feed entry that left the window before the collector came):
                # send it once more, as an update, which cannot make a second copy; then only report it.
                self.store.resend_unseen(conn, row.id, now, error=f"not seen after {n} checks; sending again")
                self.store.audit(conn, now, "daemon", "resend_unseen", item_id=row.item_id, channel=row.channel,
                                 checks=n)
                log.warning("delivery.resend_unseen", checks=n)
                return
            wait = policy.verify_wait(n)
            self.store.not_live_yet(conn, row.id, now, checks=n, next_check=now + wait,
                                    error=error or f"sent, but readers cannot see it yet (check {n})")
        log.info("delivery.not_live_yet", check=n, next_s=wait.total_seconds())

__all__ = ["Dispatcher"]
