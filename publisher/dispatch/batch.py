"""Group commit: the sends that finish in the same turn of the event loop are recorded in one transaction.

With fast channels the event loop's time went to the store, not the wire: one write transaction per sent
row (the row, its placement, the audit line), each a handful of statements through SQLAlchemy. Rows whose
calls return together now commit together, one statement per kind for all of them; a send waits at most
one turn of the loop for its batch. A row that had moved on meanwhile (a person's retry) makes the batch
roll back, and each row is then written on its own, exactly as before, so its stale outcome is reported and
the others are kept. Until its outcome commits a row stays `sending` under its lease: a crash in between
is reconciled through `find`, as a crash after any send is.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import structlog
from structlog.contextvars import bound_contextvars

from channels.base import Receipt
from publisher.dispatch.outcomes import Bookkeeper
from publisher.model import Delivery, Revision
from publisher.store.deliveries import BatchMoved

log = structlog.get_logger()


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

    async def sent(self, row: Delivery, receipt: Receipt, rev: Revision) -> None:
        """Record a successful create or update; raises what recording this row alone would raise."""
        loop = asyncio.get_running_loop()
        if not self._pending:
            loop.call_soon(self._flush)  # runs after every task the loop is resuming in this turn
        entry = _Sent(row, receipt, rev, loop.create_future())
        self._pending.append(entry)
        await entry.done

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        linked: list[_Sent] = []  # rows whose channel others link to: their release of waiting rows, one by one
        plain: list[_Sent] = []
        for e in batch:
            (linked if self.books.dependents(e.row) else plain).append(e)
        self._one_by_one(linked)
        batch = plain
        if len(batch) < 2:
            self._one_by_one(batch)
            return
        books, now = self.books, self.books.clock.now()
        try:
            with books.store.tx() as conn:
                books.store.mark_sent_many(conn, [{
                    "id": e.row.id, "item_id": e.row.item_id, "channel": e.row.channel,
                    "remote_id": e.receipt.remote_id, "url": e.receipt.url, "extra": e.receipt.extra,
                    "revision": e.rev.revision, "verify_at": now + books.config.channels[e.row.channel].verify_after,
                } for e in batch], now)
                books.store.audit_many(conn, now, "daemon", [{
                    "action": "send", "item_id": e.row.item_id, "revision": e.rev.revision, "channel": e.row.channel,
                    "detail": {"remote_id": e.receipt.remote_id, "url": e.receipt.url, "attempt": e.row.attempts,
                               "outcome": "sent"},
                } for e in batch])
        except BatchMoved as exc:
            log.info("dispatch.batch_split", rows=len(batch), reason=str(exc))
            self._one_by_one(batch)
            return
        except Exception as exc:  # the store: every row of the batch gets the error its own write would have
            for e in batch:
                if not e.done.done():
                    e.done.set_exception(exc)
            return
        for e in batch:
            with bound_contextvars(channel=e.row.channel, item_id=e.row.item_id):
                books.recorded(e.row, e.receipt)
            if not e.done.done():
                e.done.set_result(None)

    def _one_by_one(self, batch: list[_Sent]) -> None:
        for e in batch:
            with bound_contextvars(channel=e.row.channel, item_id=e.row.item_id):
                try:
                    self.books.succeeded(e.row, e.receipt, rev=e.rev)
                except Exception as exc:
                    if not e.done.done():
                        e.done.set_exception(exc)
                    continue
            if not e.done.done():
                e.done.set_result(None)


__all__ = ["SentBatch"]
