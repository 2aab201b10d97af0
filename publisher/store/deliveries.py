"""The store's delivery side: creating rows, the workers' claims, and one method per transition.

Each transition is one UPDATE guarded by the states it may start from (publisher.model.TRANSITIONS):
a row that moved on meanwhile (a person's retry, a newer revision, another node's reconciliation) is
never overwritten by a late outcome; the method raises IllegalTransition instead. Every transition
also ends the row's lease. Claims use `FOR UPDATE SKIP LOCKED`, which SQLite's compiler leaves out
(its single writer makes the UPDATE atomic anyway).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from publisher.errors import PublisherError
from publisher.model import (
    ACTIVE,
    REPLACEABLE,
    Delivery,
    DeliveryState,
    IllegalTransition,
    Placement,
    sources,
)
from publisher.store.changes import announce
from publisher.store.engine import StoreBase
from publisher.store.schema import CLAIMABLE_SQL, deliveries, placements, revisions
from publisher.store.statements import (
    CLAIM,
    MARK_SENT_MANY,
    NEWER,
    PLACEMENTS_FOR,
    RENEW,
    UNCLAIM,
    move_statement,
    upsert_placement,
)

S = DeliveryState
_CLAIMABLE = sa.text(CLAIMABLE_SQL)


# Run for every approved revision (publisher/dispatch/outbox.py): built once, with bound parameters.
@functools.lru_cache(maxsize=64)
def _supersede_statement(channels: tuple[str, ...]) -> sa.Update:
    """`supersede_active`'s UPDATE for one list of channels (a config routes to a handful of lists), built once:
    plain parameters, where an IN list is expanded again at every execution."""
    on = sa.or_(*(deliveries.c.channel == c for c in channels)) if channels else sa.false()
    return (deliveries.update().where(deliveries.c.item_id == sa.bindparam("s_item")).where(on)
            .where(sa.or_(*(deliveries.c.state == s.value for s in sorted(REPLACEABLE & sources(S.SUPERSEDED)))))
            .values(state=S.SUPERSEDED, updated_at=sa.bindparam("s_now", type_=deliveries.c.updated_at.type)))


_NEW_DELIVERIES = deliveries.insert()
_PLACEMENT = (sa.select(placements).where(placements.c.item_id == sa.bindparam("p_item"))
              .where(placements.c.channel == sa.bindparam("p_channel")))


class BatchMoved(PublisherError):
    """A row of a batched transition had moved on: the batch is rolled back and written row by row."""


class DeliveryStore(StoreBase):
    # --- creation ------------------------------------------------------------------------------

    @staticmethod
    def supersede_active(conn: Connection, item_id: str, channels: Iterable[str], now: datetime) -> int:
        """A newer revision (or a retraction) replaces the item's rows on these channels not yet sent, or
        sent and not yet seen. A row in flight (`sending`) finishes; its outcome then yields to the newer row."""
        res = conn.execute(_supersede_statement(tuple(channels)), {"s_item": item_id, "s_now": now})
        return res.rowcount or 0

    @staticmethod
    def add_deliveries(conn: Connection, rows: list[dict[str, Any]], now: datetime) -> None:
        if rows:
            conn.execute(_NEW_DELIVERIES, [{"attempts": 0, "verify_attempts": 0, "created_at": now,
                                                "updated_at": now, **r} for r in rows])
            announce(conn)

    @staticmethod
    def in_flight_channels(conn: Connection, item_id: str) -> list[str]:
        """The channels where a send of the item is in flight (`sending`): a retraction must follow it there."""
        return list(conn.execute(sa.select(deliveries.c.channel).distinct().where(deliveries.c.item_id == item_id)
                                 .where(deliveries.c.state == S.SENDING).where(~deliveries.c.retract)).scalars())

    @staticmethod
    def placement(conn: Connection, item_id: str, channel: str) -> Placement | None:
        row = conn.execute(_PLACEMENT, {"p_item": item_id, "p_channel": channel}).mappings().first()
        return None if row is None else Placement.from_row(row)

    @staticmethod
    def placements_of(conn: Connection, item_id: str) -> list[Placement]:
        rows = conn.execute(sa.select(placements).where(placements.c.item_id == item_id)
                            .order_by(placements.c.channel)).mappings()
        return [Placement.from_row(r) for r in rows]

    @staticmethod
    def placements_for(conn: Connection, item_ids: Iterable[str], channels: Iterable[str]) -> list[Placement]:
        rows = conn.execute(PLACEMENTS_FOR, {"p_items": sorted(set(item_ids)), "p_channels": sorted(set(channels))})
        return [Placement.from_row(r) for r in rows.mappings()]

    @staticmethod
    def set_placement(conn: Connection, item_id: str, channel: str, *, remote_id: str, url: str | None,
                      extra: dict[str, Any], revision: int, retracted: bool, now: datetime) -> None:
        values = {"remote_id": remote_id, "url": url, "extra": extra, "revision": revision,
                  "retracted": retracted, "updated_at": now}
        done = conn.execute(placements.update().where(placements.c.item_id == item_id)
                            .where(placements.c.channel == channel).values(**values))
        if not done.rowcount:
            conn.execute(placements.insert().values(item_id=item_id, channel=channel, **values))

    # --- the worker's reads --------------------------------------------------------------------

    def claim(self, channel: str, owner: str, now: datetime, limit: int, lease: timedelta,
              *, send: bool = True) -> list[Delivery]:
        """Take up to `limit` due rows of one channel: pending/retrying to send (unless `send` is
        false, e.g. when the rate limit is spent), and sent rows to verify. One statement: the rows are
        read in claim order from ix_deliveries_claim and leased, and a row to send becomes `sending`, so
        that after a crash it is reconciled through `find`, never blindly resent."""
        with self.engine.begin() as conn:
            rows = conn.execute(CLAIM[send], {"c_channel": channel, "c_now": now, "c_limit": limit,
                                               "c_owner": owner, "c_until": now + lease}).mappings().all()
        return sorted(map(Delivery.from_row, rows), key=lambda d: (d.next_attempt_at, d.id))

    def unclaim(self, rows: Sequence[Delivery], owner: str, now: datetime) -> int:
        """Rows claimed ahead and never started (the daemon is stopping): their lease ends, and a row to send goes
        back to pending with its attempt uncounted, so that its next attempt is a first one again (no `find`)."""
        if not rows:
            return 0
        with self.engine.begin() as conn:
            done = conn.execute(UNCLAIM, [{"u_id": r.id, "u_owner": owner, "u_attempts": r.attempts, "u_now": now}
                                           for r in rows])
        return done.rowcount or 0

    def renew(self, row: Delivery, owner: str, now: datetime, until: datetime) -> bool:
        """Extend the lease of a row claimed ahead whose call starts only now; False when the lease is no longer
        `owner`'s (it ran out and another node took the row, or a person moved it): the row must not be sent."""
        with self.engine.begin() as conn:
            done = conn.execute(RENEW, {"r_id": row.id, "r_owner": owner, "r_attempts": row.attempts,
                                        "r_state": row.state.value, "r_until": until, "r_now": now})
        return bool(done.rowcount)

    def stale_sending(self, now: datetime, owner: str | None = None, channel: str | None = None,
                      host: str | None = None) -> list[Delivery]:
        """Rows left `sending` by a process that died (lease expired), or by this node's previous life:
        leased by `owner`, or by any process of `host` (`HOST` or `HOST:PID`; the caller tells which are gone)."""
        q = sa.select(deliveries).where(deliveries.c.state == S.SENDING)
        if channel is not None:
            q = q.where(deliveries.c.channel == channel)
        cond = sa.or_(deliveries.c.lease_until.is_(None), deliveries.c.lease_until < now)
        if owner is not None:
            cond = sa.or_(cond, deliveries.c.lease_owner == owner)
        if host is not None:
            mine = deliveries.c.lease_owner.startswith(host + ":", autoescape=True)
            cond = sa.or_(cond, deliveries.c.lease_owner == host, mine)
        with self.read() as conn:
            return [Delivery.from_row(r) for r in conn.execute(q.where(cond)).mappings()]

    def sent_since(self, channel: str, since: datetime, limit: int) -> list[datetime]:
        """The newest `limit` send times on a channel since `since`, oldest first (the client-side rate limit).
        Read newest-first from ix_deliveries_channel_sent: at most `limit` index entries, however long the
        channel's history (a scan of a year of microblog rows held the event loop at each drain)."""
        with self.read() as conn:
            newest = conn.execute(
                sa.select(deliveries.c.sent_at).where(deliveries.c.channel == channel)
                .where(deliveries.c.sent_at >= since).order_by(deliveries.c.sent_at.desc()).limit(limit)).scalars()
            return list(newest)[::-1]

    def next_due(self, channel: str, *, send: bool = True) -> datetime | None:
        q = (sa.select(sa.func.min(deliveries.c.next_attempt_at)).where(deliveries.c.channel == channel)
             .where(_CLAIMABLE))  # the first entry of the channel's ix_deliveries_claim range
        if not send:
            q = q.where(deliveries.c.state == S.SENT)
        with self.read() as conn:
            return conn.execute(q).scalar()

    def delivery(self, delivery_id: int) -> Delivery | None:
        with self.read() as conn:
            row = conn.execute(sa.select(deliveries).where(deliveries.c.id == delivery_id)).mappings().first()
        return None if row is None else Delivery.from_row(row)

    def deliveries_of(self, item_id: str) -> list[Delivery]:
        """The item's rows, oldest first, each with its revision's number."""
        with self.read() as conn:
            q = (sa.select(deliveries, revisions.c.number.label("revision"))
                 .join(revisions, revisions.c.id == deliveries.c.revision_id)
                 .where(deliveries.c.item_id == item_id).order_by(deliveries.c.id))
            return [Delivery.from_row(r) for r in conn.execute(q).mappings()]

    @staticmethod
    def save_progress(conn: Connection, delivery_id: int, progress: dict[str, Any], now: datetime) -> None:
        """A send in flight checkpoints how far it got (kept until its outcome is stored, which clears it); raises
        IllegalTransition when the row is no longer being sent, so that the adapter goes no further."""
        done = conn.execute(deliveries.update().where(deliveries.c.id == delivery_id)
                            .where(deliveries.c.state == S.SENDING).values(progress=progress, updated_at=now))
        if not done.rowcount:
            current = conn.execute(sa.select(deliveries.c.state).where(deliveries.c.id == delivery_id)).scalar()
            raise IllegalTransition(table="deliveries", row_id=delivery_id, current=current,
                                    transition="record the progress of a send", to=S.SENDING)

    # --- one method per transition: each raises IllegalTransition unless the row may make it ------

    @staticmethod
    def mark_sent(conn: Connection, delivery_id: int, now: datetime, *, remote_id: str, url: str | None,
                  verify_at: datetime) -> DeliveryState:
        """The channel took it: read it back from `verify_at` on (superseded instead, sent_at kept, when a
        newer row of the item took over meanwhile: that row acts on what this one placed)."""
        return _move(conn, delivery_id, S.SENT, now, "mark sent", frm={S.SENDING}, yield_to_newer=True, sent_at=now,
                     remote_id=remote_id, url=url, last_error=None, next_attempt_at=verify_at, progress=None)

    @staticmethod
    def mark_sent_many(conn: Connection, sends: Sequence[dict[str, Any]], now: datetime) -> None:
        """`mark_sent` and `set_placement` for several rows in one statement each (the dispatcher's group
        commit). Each entry: id, item_id, channel, remote_id, url, extra, revision, verify_at. Raises
        BatchMoved when any of them had moved on, or a newer row of its item had come meanwhile: the caller
        rolls back and writes them one by one."""
        if not sends:
            return
        moved = conn.execute(MARK_SENT_MANY, [{"b_id": e["id"], "b_now": now, "b_remote_id": e["remote_id"],
                                                "b_url": e["url"], "b_verify_at": e["verify_at"]} for e in sends])
        if moved.rowcount != len(sends):
            raise BatchMoved(f"{len(sends) - moved.rowcount} of {len(sends)} rows had moved on")
        conn.execute(upsert_placement(conn.dialect.name), [
            {"item_id": e["item_id"], "channel": e["channel"], "remote_id": e["remote_id"], "url": e["url"],
             "extra": e["extra"], "revision": e["revision"], "retracted": False, "updated_at": now} for e in sends])

    @staticmethod
    def retraction_done(conn: Connection, delivery_id: int, now: datetime, *, remote_id: str | None,
                        url: str | None) -> None:
        """For a retraction, live means readers no longer see the item."""
        _move(conn, delivery_id, S.LIVE, now, "record the retraction", frm={S.SENDING}, sent_at=now, live_at=now,
              remote_id=remote_id, url=url, last_error=None, progress=None)

    @staticmethod
    def mark_live(conn: Connection, delivery_id: int, now: datetime, *, url: str | None = None) -> None:
        """A read-back found it: readers see it (at `url`, when the channel learnt it only now)."""
        learnt: dict[str, Any] = {"url": url} if url else {}
        _move(conn, delivery_id, S.LIVE, now, "mark live", frm={S.SENT}, live_at=now, last_error=None, **learnt)

    @staticmethod
    def live_lost(conn: Connection, delivery_id: int, now: datetime, *, error: str) -> None:
        """A live item the channel took down (deleted there, banned): failed, and no longer counted as live."""
        _move(conn, delivery_id, S.FAILED, now, "record the loss of a live item", frm={S.LIVE}, live_at=None,
              last_error=error, lost_at=now)

    def live_to_recheck(self, channel: str, now: datetime, limit: int, *, since: datetime) -> list[Delivery]:
        """The channel's rows live since `since` and due for another look (`next_attempt_at` passed), each still
        the item's current placement there (not an older revision's, not retracted)."""
        q = (sa.select(deliveries).join(placements, sa.and_(placements.c.item_id == deliveries.c.item_id,
                                                            placements.c.channel == deliveries.c.channel))
             .where(deliveries.c.state == S.LIVE).where(deliveries.c.channel == channel)
             .where(deliveries.c.next_attempt_at <= now).where(deliveries.c.retract.is_(False))
             .where(deliveries.c.live_at >= since)
             .where(placements.c.remote_id == deliveries.c.remote_id).where(placements.c.retracted.is_(False))
             .order_by(deliveries.c.next_attempt_at).limit(limit))
        with self.read() as conn:
            return [Delivery.from_row(r) for r in conn.execute(q).mappings()]

    @staticmethod
    def rechecked(conn: Connection, delivery_id: int, at: datetime) -> None:
        """A live row read back and still live: the next look is at `at` (its state does not change)."""
        conn.execute(deliveries.update().where(deliveries.c.id == delivery_id).where(deliveries.c.state == S.LIVE)
                     .values(next_attempt_at=at))

    @staticmethod
    def not_live_yet(conn: Connection, delivery_id: int, now: datetime, *, checks: int, next_check: datetime,
                     error: str) -> None:
        """A read-back did not find it (yet): check again at `next_check`."""
        _move(conn, delivery_id, S.SENT, now, "check again later", frm={S.SENT}, verify_attempts=checks,
              next_attempt_at=next_check, last_error=error)

    @staticmethod
    def resend_unseen(conn: Connection, delivery_id: int, now: datetime, *, error: str) -> None:
        """Sent but never seen: send once more, now (as an update; the caller checked it can be one)."""
        _move(conn, delivery_id, S.PENDING, now, "send again unseen", frm={S.SENT}, next_attempt_at=now,
              verify_attempts=0, last_error=error)

    @staticmethod
    def schedule_retry(conn: Connection, delivery_id: int, now: datetime, *, at: datetime,
                       error: str) -> DeliveryState:
        """A transient failure: the worker takes the row again at `at` (unless a newer row took over)."""
        return _move(conn, delivery_id, S.RETRYING, now, "schedule a retry", frm={S.SENDING}, yield_to_newer=True,
                     next_attempt_at=at, last_error=error)

    @staticmethod
    def fail(conn: Connection, delivery_id: int, now: datetime, *, error: str) -> DeliveryState:
        """A permanent failure, a spent retry budget, or an adapter defect: a person looks at it (unless a
        newer row of the item took over, which carries on)."""
        return _move(conn, delivery_id, S.FAILED, now, "fail", frm={S.SENDING, S.SENT}, yield_to_newer=True,
                     last_error=error, progress=None)

    @staticmethod
    def to_manual(conn: Connection, delivery_id: int, now: datetime, *, task: str) -> None:
        """What the protocol cannot do: a person does it by hand."""
        _move(conn, delivery_id, S.MANUAL, now, "hand over as a manual task", frm={S.SENDING}, last_error=task,
              progress=None)

    @staticmethod
    def back_to_pending(conn: Connection, delivery_id: int, now: datetime) -> DeliveryState:
        """Reconciliation found nothing on the channel: send again, now (attempts > 1 keeps `find` first),
        unless a newer row of the item took over meanwhile."""
        return _move(conn, delivery_id, S.PENDING, now, "send again after reconciling", frm={S.SENDING},
                     yield_to_newer=True, next_attempt_at=now)

    @staticmethod
    def release_waiting(conn: Connection, item_id: str, channels: Sequence[str], now: datetime) -> list[str]:
        """The `link_from` channel has the item's URL: its dependents' waiting rows become pending."""
        rows = conn.execute(sa.select(deliveries.c.id, deliveries.c.channel, deliveries.c.due_at)
                            .where(deliveries.c.item_id == item_id).where(deliveries.c.channel.in_(channels))
                            .where(deliveries.c.state == S.WAITING)).all()
        for rid, _ch, due in rows:
            _move(conn, rid, S.PENDING, now, "release", frm={S.WAITING}, next_attempt_at=max(due, now))
        return [r[1] for r in rows]

    @staticmethod
    def fail_waiting(conn: Connection, item_id: str, channels: Sequence[str], now: datetime, error: str) -> list[str]:
        """The `link_from` channel failed: its dependents' waiting rows fail with it."""
        rows = conn.execute(sa.select(deliveries.c.id, deliveries.c.channel).where(deliveries.c.item_id == item_id)
                            .where(deliveries.c.channel.in_(channels)).where(deliveries.c.state == S.WAITING)).all()
        for rid, _ch in rows:
            _move(conn, rid, S.FAILED, now, "fail with its link", frm={S.WAITING}, last_error=error)
        return [r[1] for r in rows]

    @staticmethod
    def requeue(conn: Connection, item_id: str, channel: str | None, now: datetime,
                resend_sent: Sequence[str] = (), links: Mapping[str, str] | None = None) -> list[Delivery]:
        """A person's retry: the item's failed or retrying rows go back to pending, due now; so do its rows
        that were sent but never showed up, on the channels in `resend_sent` (where sending again is an
        update). A row a newer one replaced (an edit, a retraction) stays as it is. A row whose channel
        links to another (`links`: channel → its link_from) that has no public link yet, but is on its way
        there, waits for it instead of failing again at once. Returns the rows as they were."""
        stuck = sa.or_(deliveries.c.state.in_([S.FAILED, S.RETRYING]),
                       sa.and_(deliveries.c.state == S.SENT, deliveries.c.channel.in_(list(resend_sent))))
        q = sa.select(deliveries).where(deliveries.c.item_id == item_id).where(stuck).where(~NEWER)
        if channel:
            q = q.where(deliveries.c.channel == channel)
        rows = [Delivery.from_row(r) for r in conn.execute(q).mappings()]
        links = links or {}
        for d in sorted(rows, key=lambda d: d.channel in links):  # the linked-to channels first
            upstream = links.get(d.channel)
            waits = (upstream is not None and not d.retract and d.state != S.SENT
                     and _link_on_its_way(conn, item_id, upstream))
            # attempts=1, not 0: the next attempt counts as a repeat, so a create asks `find` first
            _move(conn, d.id, S.WAITING if waits else S.PENDING, now, "retry", frm={S.FAILED, S.RETRYING, S.SENT},
                  next_attempt_at=now, attempts=1, verify_attempts=0, last_error=None, retry_from=now)
        if rows:
            announce(conn)
        return rows



def _link_on_its_way(conn: Connection, item_id: str, upstream: str) -> bool:
    """The item has no public link on `upstream` yet, and a row there is still on its way to one."""
    placed = conn.execute(sa.select(placements.c.url, placements.c.retracted).where(placements.c.item_id == item_id)
                          .where(placements.c.channel == upstream)).first()
    if placed is not None and placed.url and not placed.retracted:
        return False
    return conn.execute(sa.select(deliveries.c.id).where(deliveries.c.item_id == item_id)
                        .where(deliveries.c.channel == upstream).where(~deliveries.c.retract)
                        .where(deliveries.c.state.in_(sorted(ACTIVE | {S.SENDING}))).limit(1)).first() is not None


def _move(conn: Connection, delivery_id: int, to: DeliveryState, now: datetime, transition: str, *,
          frm: set[DeliveryState], yield_to_newer: bool = False, **values: Any) -> DeliveryState:
    """One guarded UPDATE: the row moves to `to` only from a state in `frm` that TRANSITIONS allows.
    With `yield_to_newer`, a row that a newer row of its item and channel replaced while it was in flight
    is superseded instead, in the same statement; returns the state the row took."""
    allowed = tuple(sorted(sources(to) & frm))
    assert allowed, f"{transition}: no state in {frm} may move to {to} (publisher.model.TRANSITIONS)"
    if yield_to_newer:
        assert set(allowed) <= sources(S.SUPERSEDED), f"{transition}: {allowed} may not be superseded"
    stmt = move_statement(to, allowed, yield_to_newer, tuple(sorted(values)))
    done = conn.execute(stmt, {"m_id": delivery_id, "m_now": now, **{f"m_{k}": v for k, v in values.items()}}).first()
    if done is None:
        current = conn.execute(sa.select(deliveries.c.state).where(deliveries.c.id == delivery_id)).scalar()
        raise IllegalTransition(table="deliveries", row_id=delivery_id, current=current, transition=transition,
                                to=to)
    return DeliveryState(done[0])
