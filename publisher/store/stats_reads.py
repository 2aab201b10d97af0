"""The store's read side for the disclosure statistics (publisher/stats/): every statement they run.

Two reads, in one read transaction: the revisions of the items a period may hold (a document date in the
period, or none, in which case the first time the item reached readers decides), and, per revision and
channel, the first time a delivery was sent and went live. publisher/stats/ keeps the rules (which item
counts in which year, what is an edit, what was on time) and works on what these return. A bureau-year is
about a thousand items: the rows are few, so the rules are plain Python over them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa

from publisher.model import RevisionState
from publisher.store.schema import UTCDateTime, deliveries, revisions

if TYPE_CHECKING:
    from publisher.store.db import Store

__all__ = ["RevisionFact", "SendFact", "dated_years", "period_facts"]


@dataclass(frozen=True)
class RevisionFact:
    """One revision of an item the period may hold: what the statistics need of it."""

    revision_id: int
    item_id: str
    number: int
    category: str
    source: str | None
    doc_date: date | None
    created_at: datetime
    retract: bool
    state: RevisionState
    screened_out: bool  # the confidentiality screen found something in it (it was blocked, maybe released since)


@dataclass(frozen=True)
class SendFact:
    """A revision on one channel: when it was first sent (the channel accepted it) and first seen live."""

    revision_id: int
    channel: str
    sent_at: datetime | None
    live_at: datetime | None


def period_facts(store: Store, first: date, last: date) -> tuple[list[RevisionFact], list[SendFact]]:
    """Every revision of the items with a revision dated in [first, last] or undated, and their sends."""
    dated = sa.or_(revisions.c.doc_date.between(first, last), revisions.c.doc_date.is_(None))
    wanted = sa.select(revisions.c.item_id).where(dated).distinct()
    revs_q = (sa.select(revisions.c.id, revisions.c.item_id, revisions.c.number, revisions.c.category,
                        revisions.c.source, revisions.c.doc_date, revisions.c.created_at, revisions.c.retract,
                        revisions.c.state, revisions.c.findings)
              .where(revisions.c.item_id.in_(wanted)).order_by(revisions.c.item_id, revisions.c.number))
    # type_coerce: min() of a timestamp would come back as SQLite's text, not as the column's aware datetime
    sends_q = (sa.select(deliveries.c.revision_id, deliveries.c.channel,
                         sa.type_coerce(sa.func.min(deliveries.c.sent_at), UTCDateTime()),
                         sa.type_coerce(sa.func.min(deliveries.c.live_at), UTCDateTime()))
               .where(deliveries.c.item_id.in_(wanted))
               .where(sa.or_(deliveries.c.sent_at.is_not(None), deliveries.c.live_at.is_not(None)))
               .group_by(deliveries.c.revision_id, deliveries.c.channel))
    with store.read() as conn:
        revs = [RevisionFact(
            revision_id=r.id, item_id=r.item_id, number=r.number, category=r.category, source=r.source,
            doc_date=r.doc_date, created_at=r.created_at, retract=bool(r.retract), state=RevisionState(r.state),
            screened_out=bool(r.findings)) for r in conn.execute(revs_q)]
        sends = [SendFact(revision_id=rid, channel=ch, sent_at=sent, live_at=live)
                 for rid, ch, sent, live in conn.execute(sends_q)]
    return revs, sends



def dated_years(store: Store) -> tuple[int, int] | None:
    """The first and last year of the revisions' document dates (None: no dated revision yet)."""
    with store.read() as conn:
        first, last = conn.execute(sa.select(sa.func.min(revisions.c.doc_date), sa.func.max(revisions.c.doc_date))).one()
    if first is None or last is None:
        return None
    return date.fromisoformat(str(first)).year, date.fromisoformat(str(last)).year
