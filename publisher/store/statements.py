"""The delivery side's hot statements, each built once with bound parameters: a worker claims and records
hundreds of rows a second, and building a statement (an alias's column collection, a CASE, a subquery) cost
more than running it. publisher/store/deliveries.py runs them."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from publisher.model import TO_SEND, DeliveryState
from publisher.store.schema import CLAIMABLE_SQL, deliveries, placements, revisions

S = DeliveryState
_CLAIMABLE = sa.text(CLAIMABLE_SQL)


def _newer_row() -> sa.Exists:
    """A later row of the same item on the same channel exists (an edit's or a retraction's). Built once, as
    NEWER: an alias's column collection costs more to build than the statements that use it cost to run."""
    newer = deliveries.alias("newer")
    return (sa.exists().where(newer.c.item_id == deliveries.c.item_id).where(newer.c.channel == deliveries.c.channel)
            .where(newer.c.id > deliveries.c.id))


NEWER = _newer_row()


@functools.cache
def move_statement(to: DeliveryState, allowed: tuple[DeliveryState, ...], yield_to_newer: bool,
                   keys: tuple[str, ...]) -> sa.Update:
    """`deliveries._move`'s UPDATE for one kind of transition, built once with bound parameters (m_id, m_now, m_<column>):
    building it cost more than running it, several times per delivery."""
    state: Any = to.value
    if yield_to_newer:
        state = sa.case((NEWER, S.SUPERSEDED.value), else_=to.value)
    return (deliveries.update().where(deliveries.c.id == sa.bindparam("m_id"))
            .where(_one_of(allowed))
            .values(state=state, updated_at=_param("m_now", "updated_at"), lease_owner=None, lease_until=None,
                    **{k: _param(f"m_{k}", k) for k in keys})
            .returning(deliveries.c.state))


def _one_of(states: Iterable[DeliveryState]) -> sa.ColumnElement[bool]:
    """state = a OR state = b ...: plain parameters, where an IN list is expanded at each execution (and cannot be
    executemany'd)."""
    return sa.or_(*(deliveries.c.state == s.value for s in states))


def _param(name: str, column: str) -> sa.BindParameter[Any]:
    return sa.bindparam(name, type_=deliveries.c[column].type)


def _mark_sent_many_statement() -> sa.Update:
    return (deliveries.update().where(deliveries.c.id == sa.bindparam("b_id"))
            .where(deliveries.c.state == S.SENDING)  # mark_sent's one source state (an IN cannot be executemany'd)
            .where(~NEWER)  # a row a newer one replaced meanwhile is superseded, one by one (mark_sent)
            .values(state=S.SENT.value, updated_at=_param("b_now", "updated_at"),
                    lease_owner=None, lease_until=None, sent_at=_param("b_now", "sent_at"), progress=None,
                    remote_id=_param("b_remote_id", "remote_id"), url=_param("b_url", "url"), last_error=None,
                    next_attempt_at=_param("b_verify_at", "next_attempt_at")))


@functools.cache
def upsert_placement(dialect: str) -> Any:
    """The placement of several sent rows, inserted or updated in one executemany (built once per dialect)."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    upsert = insert(placements)
    return upsert.on_conflict_do_update(
        index_elements=[placements.c.item_id, placements.c.channel],
        set_={c: upsert.excluded[c] for c in ("remote_id", "url", "extra", "revision", "retracted", "updated_at")})


MARK_SENT_MANY = _mark_sent_many_statement()
UNCLAIM = (deliveries.update().where(deliveries.c.id == sa.bindparam("u_id"))
            .where(deliveries.c.lease_owner == sa.bindparam("u_owner"))
            .where(deliveries.c.attempts == sa.bindparam("u_attempts"))
            .where(_one_of((S.SENDING, S.SENT)))  # sending → pending: TRANSITIONS allows it
            .values(lease_owner=None, lease_until=None, updated_at=_param("u_now", "updated_at"),
                    state=sa.case((deliveries.c.state == S.SENDING.value, S.PENDING.value), else_=deliveries.c.state),
                    attempts=sa.case((deliveries.c.state == S.SENDING.value, deliveries.c.attempts - 1),
                                     else_=deliveries.c.attempts)))


RENEW = (deliveries.update().where(deliveries.c.id == sa.bindparam("r_id"))
         .where(deliveries.c.lease_owner == sa.bindparam("r_owner"))
         .where(deliveries.c.attempts == sa.bindparam("r_attempts"))
         .where(deliveries.c.state == sa.bindparam("r_state"))
         .values(lease_until=sa.bindparam("r_until", type_=deliveries.c.lease_until.type),
                 updated_at=_param("r_now", "updated_at")))


def _claim_statement(send: bool) -> sa.Update:
    """The claim, built once (a worker claims hundreds of times a second; building it each time cost more
    than running it). Its parameters: c_channel, c_now, c_limit, c_owner, c_until."""
    other = deliveries.alias("other")
    in_flight = sa.exists().where(other.c.item_id == deliveries.c.item_id).where(
        other.c.channel == sa.bindparam("c_channel")).where(other.c.state == S.SENDING)
    now = sa.bindparam("c_now", type_=deliveries.c.next_attempt_at.type)
    due = (sa.select(deliveries.c.id).where(deliveries.c.channel == sa.bindparam("c_channel")).where(_CLAIMABLE)
           .where(deliveries.c.next_attempt_at <= now)
           .where(sa.or_(deliveries.c.lease_until.is_(None), deliveries.c.lease_until < now))
           .where(~in_flight)
           .order_by(deliveries.c.next_attempt_at, deliveries.c.id).limit(sa.bindparam("c_limit", type_=sa.Integer))
           .with_for_update(skip_locked=True)
           .correlate(None))  # its own FROM, not the UPDATE's table
    if not send:
        due = due.where(deliveries.c.state == S.SENT)
    to_send = _one_of(sorted(TO_SEND))
    return (deliveries.update().where(deliveries.c.id.in_(due.scalar_subquery())).values(
        lease_owner=sa.bindparam("c_owner"), lease_until=sa.bindparam("c_until", type_=deliveries.c.lease_until.type),
        updated_at=now,
        state=sa.case((to_send, S.SENDING.value), else_=deliveries.c.state),
        attempts=sa.case((to_send, deliveries.c.attempts + 1), else_=deliveries.c.attempts),
    ).returning(*deliveries.c))


CLAIM = {send: _claim_statement(send) for send in (True, False)}

# The claimed rows' read-ahead (publisher/dispatch/outcomes.py, `prefetch`), once per claim: lists as expanding
# parameters, so the statement and its cache key are not made anew each time.
PLACEMENTS_FOR = (sa.select(placements).where(placements.c.item_id.in_(sa.bindparam("p_items", expanding=True)))
                  .where(placements.c.channel.in_(sa.bindparam("p_channels", expanding=True))))
REVISIONS_BY_IDS = sa.select(revisions).where(revisions.c.id.in_(sa.bindparam("r_ids", expanding=True)))

__all__ = ["CLAIM", "MARK_SENT_MANY", "NEWER", "PLACEMENTS_FOR", "RENEW", "REVISIONS_BY_IDS", "UNCLAIM",
           "move_statement", "upsert_placement"]
