"""The dispatcher's bookkeeping: what one row's outcome writes to the store, and the reads a send needs.

Each outcome (sent, retry later, failed, a manual task) is one transaction: the row's new state, the
item's placement on the channel, the dependents a link releases or fails, and the audit line commit
together. Split from publisher/dispatch/dispatcher.py, which keeps the workers' loops and the calls.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy.engine import Connection

from channels.base import ManualTask, PermanentError, Progress, Receipt, TransientError
from publisher.clock import Clock
from publisher.config.settings import Config
from publisher.dispatch import policy
from publisher.dispatch.outbox import revision_from_row
from publisher.dispatch.policy import describe
from publisher.dispatch.telemetry import Telemetry
from publisher.model import Delivery, DeliveryState, Placement, Revision
from publisher.store.db import Store

log = structlog.get_logger()


class Bookkeeper:
    """Writes each row's outcome; `wake` tells the dispatcher a channel has work (a released dependent)."""

    def __init__(self, *, store: Store, config: Config, clock: Clock, telemetry: Telemetry, rng: random.Random,
                 wake: Callable[[str], None]) -> None:
        self.store, self.config, self.clock, self.telemetry, self.rng = store, config, clock, telemetry, rng
        self.wake = wake
        self._revisions: dict[int, Revision] = {}
        # read ahead for claimed rows (prefetch), by (row id, attempt): a later claim of the row never sees them
        self._placed: dict[tuple[int, int], dict[str, Placement | None]] = {}

    # --- outcomes -----------------------------------------------------------------------------------

    def succeeded(self, row: Delivery, receipt: Receipt | None, *, retract: bool = False,
                  reconciled: bool = False, rev: Revision | None = None) -> None:
        now = self.clock.now()
        cfg = self.config.channels[row.channel]
        with self.store.tx() as conn:
            if retract:
                self.store.retraction_done(conn, row.id, now, remote_id=receipt.remote_id if receipt else None,
                                           url=receipt.url if receipt else None)
                if receipt is not None:
                    self.store.set_placement(conn, row.item_id, row.channel, remote_id=receipt.remote_id,
                                             url=receipt.url, extra=receipt.extra, revision=0, retracted=True, now=now)
                self.store.audit(conn, now, "daemon", "retracted", item_id=row.item_id, channel=row.channel)
            else:
                assert receipt is not None
                rev = rev or self.revision(row)
                # superseded instead when a newer row (an edit, a retraction) came while this send was in
                # flight: the placement below is what that row then updates or takes down
                state = self.store.mark_sent(conn, row.id, now, remote_id=receipt.remote_id, url=receipt.url,
                                             verify_at=now + cfg.verify_after)
                self.store.set_placement(conn, row.item_id, row.channel, remote_id=receipt.remote_id,
                                         url=receipt.url, extra=receipt.extra,
                                         revision=rev.revision if rev else 0, retracted=False, now=now)
                released = (self.store.release_waiting(conn, row.item_id, self.dependents(row), now)
                            if receipt.url else [])
                self.store.audit(conn, now, "daemon", "reconcile" if reconciled else "send", item_id=row.item_id,
                                 revision=rev.revision if rev else None, channel=row.channel,
                                 remote_id=receipt.remote_id, url=receipt.url, attempt=row.attempts,
                                 outcome="found" if reconciled else "sent",
                                 **({"then": "superseded"} if state == DeliveryState.SUPERSEDED else {}))
                for name in released:
                    self.wake(name)
        self.recorded(row, receipt, retract=retract, reconciled=reconciled)

    def recorded(self, row: Delivery, receipt: Receipt | None, *, retract: bool = False,
                 reconciled: bool = False) -> None:
        """After a success has committed: the counters, the log line, and the worker woken for the read-back."""
        self.telemetry.send_outcome(row.channel, "retracted" if retract else "found" if reconciled else "sent")
        log.info("delivery.sent", remote_id=getattr(receipt, "remote_id", None), attempt=row.attempts,
                 retract=retract, reconciled=reconciled)
        if not retract:
            self.wake(row.channel)  # its verification may be due at once

    def transient(self, row: Delivery, exc: TransientError) -> None:
        now = self.clock.now()
        budget = self.config.channels[row.channel].retry
        message = describe(exc)
        age = now - (row.retry_from or row.due_at)  # a person's retry gets the whole budget again
        if row.attempts >= budget.max_attempts or age >= budget.max_age:
            self.permanent(row, describe(PermanentError(
                f"gave up after {row.attempts} attempts over {age}: {message}", status=exc.status, remote=exc.remote)))
            return
        wait = policy.backoff(row.attempts, budget.base, budget.cap, self.rng, exc.retry_after)
        with self.store.tx() as conn:
            state = self.store.schedule_retry(conn, row.id, now, at=now + wait, error=message)
        if state == DeliveryState.SUPERSEDED:  # a newer row (an edit, a retraction) carries on instead
            log.info("delivery.superseded", error=message)
            return
        self.telemetry.retry_scheduled(row.channel)
        log.warning("delivery.retry_scheduled", attempt=row.attempts, wait_s=round(wait.total_seconds(), 3),
                    error=message)

    def permanent(self, row: Delivery, message: str) -> None:
        now = self.clock.now()
        with self.store.tx() as conn:
            if self.store.fail(conn, row.id, now, error=message) == DeliveryState.SUPERSEDED:
                # a newer row (an edit, a retraction) carries on; its dependents wait for it, not for this one
                self.store.audit(conn, now, "daemon", "superseded", item_id=row.item_id, channel=row.channel,
                                 error=message)
                log.info("delivery.superseded", error=message)
                return
            self.store.fail_waiting(conn, row.item_id, self.dependents(row), now,
                                    f"{row.channel} failed, so there is no article to link to: {message}")
            self.store.audit(conn, now, "daemon", "failed", item_id=row.item_id, channel=row.channel,
                             error=message)
        self.telemetry.send_outcome(row.channel, "failed")
        log.error("delivery.failed", error=message)

    def defect(self, row: Delivery, exc: Exception) -> None:
        message = policy.defect_summary(exc)
        log.error("dispatch.adapter_bug", error=message, exc_info=exc)
        try:
            self.permanent(row, message)
        except Exception:  # the store is unreachable too: the lease runs out and the row is taken again
            log.exception("dispatch.store_error")

    def manual(self, row: Delivery, exc: ManualTask) -> None:
        now = self.clock.now()
        with self.store.tx() as conn:
            self.store.to_manual(conn, row.id, now, task=str(exc))
            self.store.audit(conn, now, "daemon", "manual_task", item_id=row.item_id, channel=row.channel,
                             task=str(exc))
        self.telemetry.send_outcome(row.channel, "manual")
        log.warning("delivery.manual_task", task=str(exc))

    def went_live(self, conn: Connection, row: Delivery, receipt: Receipt, now: datetime) -> list[str]:
        """A read-back that learnt where the item is (WeChat publishes asynchronously): the placement takes its URL
        and receipt, the audit log says where it is (and which article it replaced), and the channels linking to it
        are released; returns those, to be woken once the transaction commits."""
        p = self.store.placement(conn, row.item_id, row.channel)
        if p is not None and not p.retracted and p.remote_id == receipt.remote_id:
            self.store.set_placement(conn, row.item_id, row.channel, remote_id=receipt.remote_id, url=receipt.url,
                                     extra=receipt.extra, revision=p.revision, retracted=False, now=now)
        replaced = {"replaced": receipt.extra["replaced"]} if receipt.extra.get("replaced") else {}
        self.store.audit(conn, now, "daemon", "live", item_id=row.item_id, channel=row.channel,
                         remote_id=receipt.remote_id, url=receipt.url, **replaced)
        if replaced:
            log.warning("delivery.url_changed", url=receipt.url, **replaced)
        return self.store.release_waiting(conn, row.item_id, self.dependents(row), now) if receipt.url else []

    def progress(self, row: Delivery) -> Progress:
        """The row's progress for its adapter call: what an interrupted attempt recorded, and where a checkpoint of
        this one goes (the row, still `sending`, in a transaction of its own, committed before the adapter goes on)."""

        def save(progress: dict[str, Any]) -> None:
            with self.store.tx() as conn:
                self.store.save_progress(conn, row.id, progress, self.clock.now())
            log.info("delivery.checkpoint", progress=progress)

        return Progress(recorded=row.progress or {}, save=save)

    # --- helpers ------------------------------------------------------------------------------------

    def dependents(self, row: Delivery) -> list[str]:
        """The channels that link to the item on this row's channel (their `link_from`)."""
        return [n for n, c in self.config.channels.items() if c.link_from == row.channel]

    def prefetch(self, rows: list[Delivery]) -> None:
        """Read, in one go, what the claimed rows' sends will ask for: their placements on their channel and on
        its `link_from` channel, and the revisions not cached yet (one query each, not two per row). A claimed
        row's own placement cannot change before its send (no other row of the item is in flight on that
        channel), and its upstream link only ever appears, never goes, while the row waits to be sent."""
        if not rows:
            return
        channels = {r.channel for r in rows}
        channels |= {u for c in channels if (u := self.config.channels[c].link_from) is not None}
        missing = {r.revision_id for r in rows} - self._revisions.keys()
        with self.store.read() as conn:
            found = {(p.item_id, p.channel): p for p in self.store.placements_for(conn, [r.item_id for r in rows],
                                                                                  channels)}
            stored = self.store.revisions_by_ids(conn, missing) if missing else []
        for r in rows:
            self._placed[(r.id, r.attempts)] = {ch: found.get((r.item_id, ch)) for ch in channels}
        for rev in stored:
            self._remember(rev.id, revision_from_row(rev, self.config))

    def forget(self, row: Delivery) -> None:
        """The row's send is over: what was read ahead for it is dropped."""
        self._placed.pop((row.id, row.attempts), None)

    def _placement_of(self, row: Delivery, channel: str) -> Placement | None:
        ahead = self._placed.get((row.id, row.attempts), {})
        if channel in ahead:
            return ahead[channel]
        with self.store.read() as conn:
            return self.store.placement(conn, row.item_id, channel)

    def _remember(self, revision_id: int, rev: Revision) -> None:
        if len(self._revisions) > 2048:
            self._revisions.clear()
        self._revisions[revision_id] = rev

    def placement(self, row: Delivery) -> Receipt | None:
        p = self._placement_of(row, row.channel)
        if p is None or p.retracted:
            return None
        return Receipt(remote_id=p.remote_id, url=p.url, extra=p.extra or {})

    def revision(self, row: Delivery) -> Revision | None:
        cached = self._revisions.get(row.revision_id)
        upstream = self.config.channels[row.channel].link_from
        link = None
        if upstream is not None:
            p = self._placement_of(row, upstream)
            link = p.url if p is not None and not p.retracted else None
        if cached is None:
            with self.store.read() as conn:
                cached = revision_from_row(self.store.revision_by_id(conn, row.revision_id), self.config)
            self._remember(row.revision_id, cached)
        if upstream is not None and link is None:
            self.permanent(row, f"no public link on {upstream} yet; retry once it is published there")
            return None
        return cached.model_copy(update={"link": link}) if link != cached.link else cached


__all__ = ["Bookkeeper"]
