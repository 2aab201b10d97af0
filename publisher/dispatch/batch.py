"""Group commit: the sends that finish within a few milliseconds of each other are recorded in one transaction.

With fast channels the event loop's time went to the store, not the wire: one write transaction per sent
row (the row, its placement, the audit line), each a handful of statements through SQLAlchemy. Sent rows
now wait up to `FLUSH_AFTER` (10 ms, or until `FLUSH_ROWS` have gathered) and commit together, one statement per
kind for all of them. The send's slot is free meanwhile: until its outcome commits the row stays `sending`
under its lease, so no worker takes another row of the item on that channel, and a crash in between is
reconciled through `find`, as a crash after any send is. A row that had moved on meanwhile (a person's
retry) makes the batch roll back, and each row is then written on its own, exactly as before, so its stale
outcome is reported and the others are kept. While another process holds SQLite's write lock (intake taking a
file), the commit does not wait on the event loop: the batch stays queued and is tried again a moment later.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

import structlog
from structlog.contextvars import bound_contextvars

from channels.base import Receipt
from publisher.dispatch.outcomes import Bookkeeper
from publisher.model import Delivery, IllegalTransition, Revision
from publisher.store.deliveries import BatchMoved
from publisher.store.engine import WAIT_S, WriteBusy, next_pause, without_waiting

log = structlog.get_logger()

FLUSH_AFTER = 0.01  # seconds a sent row waits for others to share its commit
FLUSH_ROWS = 64  # ... or until this many have gathered


@dataclass
class _Sent:
    row: Delivery
    receipt: Receipt
    rev: Revision
    done: asyncio.Future[None] = field(repr=False)


class SentBatch:
    def __init__(self, books: Bookkeeper) -> None:
        self.books = books
        self._pending: list[_Sent] = []
        self._timer: asyncio.TimerHandle | None = None
        self._pause = 0.0  # > 0 while the store's write lock is elsewhere: the next try's delay
        self._busy_since = 0.0

    def sent(self, row: Delivery, receipt: Receipt, rev: Revision) -> asyncio.Future[None]:
        """Queue a successful create or update for the next commit. The future is done once it has committed, or
        holds what recording this row alone would raise; the caller need not wait for it."""
        loop = asyncio.get_running_loop()
        entry = _Sent(row, receipt, rev, loop.create_future())
        entry.done.add_done_callback(lambda done: _unrecorded(row, done))
        self._pending.append(entry)
        if len(self._pending) >= FLUSH_ROWS and not self._pause:
            self.flush(wait=False)
        elif self._timer is None:
            self._timer = loop.call_later(FLUSH_AFTER, self.flush, False)
        return entry.done

    def pending(self, channel: str) -> int:
        """The channel's sent rows not committed yet (they count against its rate limit)."""
        return sum(e.row.channel == channel for e in self._pending) if self._pending else 0

    def flush(self, wait: bool = True) -> None:
        """Commit what is queued, now (the dispatcher calls it before it goes idle, and with `wait` as it stops).
        Without `wait`, a write lock held elsewhere leaves the batch queued for another try after `next_pause`;
        after `WAIT_S` of that the next try waits for the lock as any writer does."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._pending = self._pending, []
        if not batch:
            return
        wait = wait or (bool(self._pause) and time.monotonic() - self._busy_since > WAIT_S)
        try:
            with contextlib.nullcontext() if wait else without_waiting():
                released = self._commit(batch)
        except WriteBusy:
            if not self._pause:
                self._busy_since = time.monotonic()
            self._pause = next_pause(self._pause)
            self._pending[:0] = batch
            self._timer = asyncio.get_running_loop().call_later(self._pause, self.flush, False)
            return
        except BatchMoved as exc:
            self._pause = 0.0
            log.info("dispatch.batch_split", rows=len(batch), reason=str(exc))
            self._one_by_one(batch)
            return
        except Exception as exc:  # the store: every row of the batch gets the error its own write would have
            self._pause = 0.0
            for e in batch:
                _settle(e, exc)
            return
        self._pause = 0.0
        for e in batch:
            with bound_contextvars(channel=e.row.channel, item_id=e.row.item_id):
                self.books.recorded(e.row, e.receipt)
            _settle(e)
        for name in released:
            self.books.wake(name)

    def _commit(self, batch: list[_Sent]) -> list[str]:
        """The batch's one transaction; returns the channels whose waiting rows it released."""
        books, now = self.books, self.books.clock.now()
        released: list[str] = []
        with books.store.tx() as conn:
            books.store.mark_sent_many(conn, [{
                "id": e.row.id, "item_id": e.row.item_id, "channel": e.row.channel,
                "remote_id": e.receipt.remote_id, "url": e.receipt.url, "extra": e.receipt.extra,
                "revision": e.rev.revision, "verify_at": now + books.config.channels[e.row.channel].verify_after,
            } for e in batch], now)
            for e in batch:  # the channels linking to a sent article may go now
                if e.receipt.url and (dependents := books.dependents(e.row)):
                    released += books.store.release_waiting(conn, e.row.item_id, dependents, now)
            books.store.audit_many(conn, now, "daemon", [{
                "action": "send", "item_id": e.row.item_id, "revision": e.rev.revision, "channel": e.row.channel,
                "detail": {"remote_id": e.receipt.remote_id, "url": e.receipt.url, "attempt": e.row.attempts,
                           "outcome": "sent"},
            } for e in batch])
        return released

    def _one_by_one(self, batch: list[_Sent]) -> None:
        for e in batch:
            with bound_contextvars(channel=e.row.channel, item_id=e.row.item_id):
                try:
                    self.books.succeeded(e.row, e.receipt, rev=e.rev)
                except Exception as exc:
                    _settle(e, exc)
                    continue
            _settle(e)


def _unrecorded(row: Delivery, done: asyncio.Future[None]) -> None:
    """A group commit that could not record this row: it moved on meanwhile, or the store failed (its lease
    then runs out, and it is reconciled through `find`)."""
    exc = None if done.cancelled() else done.exception()
    if exc is None:
        return
    with bound_contextvars(channel=row.channel, item_id=row.item_id):
        if isinstance(exc, IllegalTransition):
            log.warning("dispatch.outcome_stale", error=str(exc))
        else:
            log.error("dispatch.store_error", error=f"{type(exc).__name__}: {exc}"[:500], exc_info=exc)


def _settle(e: _Sent, exc: BaseException | None = None) -> None:
    if e.done.done():
        return
    if exc is None:
        e.done.set_result(None)
    else:
        e.done.set_exception(exc)


__all__ = ["FLUSH_AFTER", "SentBatch"]
