"""The store's intake and review side: revisions, their sign-offs, and the guarded moves of a revision's
state (publisher.model.REVISION_TRANSITIONS)."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from publisher.model import IN_REVIEW, REVISION_TRANSITIONS, Approval, IllegalTransition, RevisionState, StoredRevision
from publisher.store.engine import StoreBase
from publisher.store.schema import approvals, audit, items, revisions
from publisher.store.statements import REVISIONS_BY_IDS

LINKS_CHECKED = "links_checked"  # the audit action that marks a revision's links as checked (once per revision)

# Intake's statements, each built once with bound parameters: an item file runs a dozen of them, and building
# one (its WHERE, its IN list, its cache key) cost more than running it.
_NEW_ITEM = items.insert()
_NEW_REVISION = revisions.insert()
_CURRENT = (sa.select(items.c.current_revision).where(items.c.id == sa.bindparam("r_item"))
            .with_for_update())
_NEXT_REVISION = (items.update().where(items.c.id == sa.bindparam("r_item"))
                  .values(current_revision=sa.bindparam("r_number"), title=sa.bindparam("r_title"),
                          category=sa.bindparam("r_category"),
                          updated_at=sa.bindparam("r_now", type_=items.c.updated_at.type)))
_NEWEST = (sa.select(revisions).where(revisions.c.item_id == sa.bindparam("r_item"))
           .order_by(revisions.c.number.desc()).limit(1))
_NUMBERED = (sa.select(revisions).where(revisions.c.item_id == sa.bindparam("r_item"))
             .where(revisions.c.number == sa.bindparam("r_number")))
_BY_ID = sa.select(revisions).where(revisions.c.id == sa.bindparam("r_id"))
_APPROVALS = (sa.select(approvals).where(approvals.c.revision_id == sa.bindparam("r_id"))
              .order_by(approvals.c.id))
_KNOWN_FILE = (sa.select(revisions.c.item_id, revisions.c.number)
               .where(revisions.c.file_sha256 == sa.bindparam("r_sha256")).limit(1))
_RETRACTED = (items.update().where(items.c.id == sa.bindparam("r_item"))
              .values(retracted=sa.bindparam("r_retracted"),
                      updated_at=sa.bindparam("r_now", type_=items.c.updated_at.type)))


class RevisionStore(StoreBase):
    # --- intake --------------------------------------------------------------------------------

    def known_file(self, sha256: str) -> tuple[str, int] | None:
        """(item id, revision number) of the revision an identical file made, if any."""
        with self.read() as conn:
            row = conn.execute(_KNOWN_FILE, {"r_sha256": sha256}).first()
        return None if row is None else (row[0], row[1])

    def add_revision(self, conn: Connection, fields: dict[str, Any], now: datetime) -> tuple[int, int]:
        """Insert the next revision of an item (creating the item); older unapproved ones are superseded."""
        item_id = fields["item_id"]
        row = conn.execute(_CURRENT, {"r_item": item_id}).first()
        number = 1 if row is None else row[0] + 1
        if row is None:
            conn.execute(_NEW_ITEM, {"id": item_id, "category": fields["category"], "title": fields["title"],
                                          "current_revision": 1, "retracted": False, "created_at": now,
                                          "updated_at": now})
        else:
            conn.execute(_NEXT_REVISION, {"r_item": item_id, "r_number": number, "r_title": fields["title"],
                                          "r_category": fields["category"], "r_now": now})
            conn.execute(_SUPERSEDE, {"r_item": item_id})
        key = conn.execute(_NEW_REVISION, {**fields, "number": number, "created_at": now}).inserted_primary_key
        assert key is not None
        return int(key[0]), number

    @staticmethod
    def set_item_retracted(conn: Connection, item_id: str, now: datetime, retracted: bool = True) -> None:
        """Whether the item is taken down: set by a retraction, cleared when a later revision is published."""
        conn.execute(_RETRACTED, {"r_item": item_id, "r_retracted": retracted, "r_now": now})

    # --- review --------------------------------------------------------------------------------

    def revision(self, item_id: str, number: int | None = None,
                 conn: Connection | None = None) -> StoredRevision | None:
        """The item's revision `number`, or its newest one."""
        q, params = (_NUMBERED, {"r_item": item_id, "r_number": number}) if number else (_NEWEST, {"r_item": item_id})
        if conn is not None:
            row = conn.execute(q, params).mappings().first()
        else:
            with self.read() as c:
                row = c.execute(q, params).mappings().first()
        return None if row is None else StoredRevision.from_row(row)

    @staticmethod
    def revision_by_id(conn: Connection, revision_id: int) -> StoredRevision:
        return StoredRevision.from_row(conn.execute(_BY_ID, {"r_id": revision_id}).mappings().one())

    @staticmethod
    def revisions_by_ids(conn: Connection, revision_ids: Iterable[int]) -> list[StoredRevision]:
        rows = conn.execute(REVISIONS_BY_IDS, {"r_ids": sorted(set(revision_ids))}).mappings()
        return [StoredRevision.from_row(r) for r in rows]

    def revisions_in(self, states: Iterable[RevisionState]) -> list[StoredRevision]:
        with self.read() as conn:
            rows = conn.execute(sa.select(revisions).where(revisions.c.state.in_(sorted(states)))
                                .order_by(revisions.c.created_at, revisions.c.id)).mappings()
            return [StoredRevision.from_row(r) for r in rows]

    def approvals(self, revision_id: int, conn: Connection | None = None) -> list[Approval]:
        params = {"r_id": revision_id}
        if conn is not None:
            return [Approval.from_row(r) for r in conn.execute(_APPROVALS, params).mappings()]
        with self.read() as c:
            return [Approval.from_row(r) for r in c.execute(_APPROVALS, params).mappings()]

    @staticmethod
    def add_approval(conn: Connection, revision_id: int, action: str, by: str, at: datetime,
                     role: str | None = None, reason: str | None = None) -> None:
        conn.execute(approvals.insert().values(revision_id=revision_id, action=action, role=role, by=by,
                                               reason=reason, at=at))

    # --- the screen's link check (publisher/review/links.py) ---------------------------------------

    def links_unchecked(self, limit: int = 100, skip: Iterable[int] = ()) -> list[StoredRevision]:
        """Revisions in review (or blocked), oldest first, whose links no one has checked yet."""
        checked = (sa.select(audit.c.id).where(audit.c.item_id == revisions.c.item_id)
                   .where(audit.c.revision == revisions.c.number).where(audit.c.action == LINKS_CHECKED))
        q = (sa.select(revisions).where(revisions.c.state.in_(sorted(IN_REVIEW))).where(revisions.c.retract.is_(False))
             .where(~sa.exists(checked)).order_by(revisions.c.id).limit(limit))
        skipped = sorted(set(skip))
        if skipped:
            q = q.where(revisions.c.id.notin_(skipped))
        with self.read() as conn:
            return [StoredRevision.from_row(r) for r in conn.execute(q).mappings()]

    def record_link_check(self, revision_id: int, findings: list[dict[str, Any]], at: datetime,
                          **detail: Any) -> bool:
        """Add the link findings to the revision and mark its links checked, in one transaction; False (and
        nothing written) when another process checked them first."""
        with self.tx() as conn:
            row = conn.execute(sa.select(revisions.c.item_id, revisions.c.number, revisions.c.findings)
                               .where(revisions.c.id == revision_id).with_for_update()).first()
            if row is None:
                return False
            done = conn.execute(sa.select(audit.c.id).where(audit.c.item_id == row[0]).where(audit.c.revision == row[1])
                                .where(audit.c.action == LINKS_CHECKED).limit(1)).first()
            if done is not None:
                return False
            if findings:
                conn.execute(revisions.update().where(revisions.c.id == revision_id)
                             .values(findings=list(row[2] or []) + findings))
            self.audit(conn, at, "daemon", LINKS_CHECKED, item_id=row[0], revision=row[1], **detail)
            return True

    # --- a revision's moves: each raises IllegalTransition unless the revision may make it -------

    @staticmethod
    def approve_revision(conn: Connection, revision_id: int, now: datetime) -> None:
        """Chain complete and screen passed (or overridden); the caller plans the deliveries."""
        _move_revision(conn, revision_id, RevisionState.APPROVED, "approve", approved_at=now)

    @staticmethod
    def block_revision(conn: Connection, revision_id: int) -> None:
        """The confidentiality screen found something: wait for an override."""
        _move_revision(conn, revision_id, RevisionState.BLOCKED, "block")

    @staticmethod
    def await_review(conn: Connection, revision_id: int) -> None:
        """Waiting for the next sign-off of the category's chain."""
        _move_revision(conn, revision_id, RevisionState.REVIEW, "wait for review")

    @staticmethod
    def reject_revision(conn: Connection, revision_id: int) -> None:
        _move_revision(conn, revision_id, RevisionState.REJECTED, "reject")


def _sources(to: RevisionState) -> frozenset[RevisionState]:
    return frozenset(s for s, targets in REVISION_TRANSITIONS.items() if to in targets)


def _state_in(states: Iterable[RevisionState]) -> sa.ColumnElement[bool]:
    """state = a OR state = b ...: plain parameters, where an IN list is expanded again at every execution."""
    return sa.or_(*(revisions.c.state == s.value for s in sorted(states)))


_SUPERSEDE = (revisions.update().where(revisions.c.item_id == sa.bindparam("r_item"))
              .where(_state_in(_sources(RevisionState.SUPERSEDED) & IN_REVIEW))
              .values(state=RevisionState.SUPERSEDED))


@functools.cache
def _move_statement(to: RevisionState, keys: tuple[str, ...]) -> sa.Update:
    """`_move_revision`'s UPDATE for one target state and set of columns, built once (m_id, m_<column>)."""
    return (revisions.update().where(revisions.c.id == sa.bindparam("m_id")).where(_state_in(_sources(to)))
            .values(state=to, **{k: sa.bindparam(f"m_{k}", type_=revisions.c[k].type) for k in keys}))


def _move_revision(conn: Connection, revision_id: int, to: RevisionState, transition: str,
                   **values: Any) -> None:
    done = conn.execute(_move_statement(to, tuple(sorted(values))),
                        {"m_id": revision_id, **{f"m_{k}": v for k, v in values.items()}})
    if done.rowcount != 1:
        current = conn.execute(sa.select(revisions.c.state).where(revisions.c.id == revision_id)).scalar()
        raise IllegalTransition(table="revisions", row_id=revision_id, current=current, transition=transition,
                                to=to)
