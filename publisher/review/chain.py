"""Review: the category's chain of sign-offs, the confidentiality screen, and overrides.

A revision is approved when its category's chain is complete (in order) and the screen found
nothing, or a reviewer overrode the findings with a reason. Approval plans its deliveries.
Every action lands in the audit log with who and when.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import structlog
from sqlalchemy.engine import Connection

from publisher.clock import Clock
from publisher.config.screen import WordingRule
from publisher.config.settings import Config
from publisher.dispatch.outbox import plan_publication, plan_retraction
from publisher.errors import PublisherError
from publisher.model import IN_REVIEW, Approval, RevisionState, StoredRevision
from publisher.review.screen import Rules, is_blocking, screen_fields
from publisher.review.wording import Dictionary, starter_rules
from publisher.store.db import Store

log = structlog.get_logger()


class ReviewError(PublisherError):
    """A review action that cannot be taken; the message says why and what would work."""


@dataclass(frozen=True)
class Waiting:
    item_id: str
    revision: int
    title: str
    category: str
    state: RevisionState  # review | blocked
    next_role: str | None
    signed: list[str]
    findings: list[dict[str, Any]]


@lru_cache(maxsize=8)
def _rules(terms: tuple[str, ...], rules: tuple[WordingRule, ...]) -> Rules:
    return Rules.of(terms, Dictionary(rules))


def screen_rules(config: Config) -> Rules:
    """The configured terms and the wording dictionary: the shipped one (unless `screen.starter: false`)
    and config.yaml's own entries; compiled once per configuration."""
    own = tuple(config.screen.wording_rules())
    return _rules(tuple(config.screen.terms), (starter_rules() if config.screen.starter else ()) + own)


def findings_for(config: Config, title: str, body: str, *, summary: str | None = None, source: str | None = None,
                 author: str | None = None, tags: Sequence[str] = (),
                 attachments: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The screen's findings for every field of a revision that reaches a channel, in their stored form."""
    fields: list[tuple[str, int | None, str | None]] = [
        ("title", None, title), ("summary", None, summary), ("body", None, body), ("source", None, source),
        ("author", None, author)]
    fields += [("tags", i, t) for i, t in enumerate(tags)]
    fields += [("attachment", i, a) for i, a in enumerate(attachments)]
    return [f.as_dict() for f in screen_fields(fields, screen_rules(config))]


class Review:
    def __init__(self, store: Store, config: Config, clock: Clock) -> None:
        self.store = store
        self.config = config
        self.clock = clock

    # --- called by intake inside the ingest transaction -----------------------------------------

    def settle(self, conn: Connection, revision_id: int, actor: str = "daemon") -> RevisionState:
        """Move a revision as far as it can go by itself: approve it when nothing is missing."""
        rev = self.store.revision_by_id(conn, revision_id)
        now = self.clock.now()
        if rev.retract:
            # Taking an item down is the safe direction: it needs no chain and is never blocked.
            self.store.approve_revision(conn, revision_id, now)
            held = plan_retraction(conn, self.store, self.config, rev, now)
            self.store.audit(conn, now, actor, "retract", item_id=rev.item_id, revision=rev.number,
                             channels=held)
            return RevisionState.APPROVED
        if rev.state not in IN_REVIEW:  # approved, rejected or superseded: nothing left to settle
            return RevisionState(rev.state)
        approvals = self.store.approvals(revision_id, conn)
        overridden = any(a.action == "override" for a in approvals)
        if any(is_blocking(f) for f in rev.findings) and not overridden:
            self.store.block_revision(conn, revision_id)
            return RevisionState.BLOCKED
        if self._next_role(rev, approvals) is not None:
            self.store.await_review(conn, revision_id)
            return RevisionState.REVIEW
        self.store.approve_revision(conn, revision_id, now)
        channels = plan_publication(conn, self.store, self.config, rev, now)
        self.store.audit(conn, now, actor, "approved", item_id=rev.item_id, revision=rev.number,
                         channels=channels, publish_at=rev.publish_at.isoformat() if rev.publish_at else None)
        log.info("review.approved", item_id=rev.item_id, revision=rev.number, channels=channels)
        return RevisionState.APPROVED

    def _next_role(self, rev: StoredRevision, approvals: list[Approval]) -> str | None:
        chain = self.config.categories[rev.category].review if rev.category in self.config.categories else []
        signed = [a.role for a in approvals if a.action == "approve"]
        for role in chain:
            if role not in signed:
                return role
        return None

    # --- reviewers' actions ------------------------------------------------------------------------

    def _current(self, conn: Connection, item_id: str) -> StoredRevision:
        rev = self.store.revision(item_id, conn=conn)
        if rev is None:
            raise ReviewError(f"no item with id {item_id!r}; `publisher items` lists them")
        return rev

    def approve(self, item_id: str, *, role: str, by: str) -> RevisionState:
        with self.store.tx() as conn:
            rev = self._current(conn, item_id)
            if rev.state not in IN_REVIEW:
                raise ReviewError(f"{item_id} revision {rev.number} is {rev.state}, not waiting for review")
            if role not in self.config.roles:
                raise ReviewError(f"unknown role {role!r}; roles: {', '.join(self.config.roles)}")
            approvals = self.store.approvals(rev.id, conn)
            expected = self._next_role(rev, approvals)
            if expected is None:
                raise ReviewError(f"{item_id} needs no further sign-off; it is blocked by the confidentiality "
                                  "screen: see `publisher show` and use `publisher override` if it is safe")
            if role != expected:
                raise ReviewError(f"{item_id} waits for {expected} ({self.config.role_name(expected)}) "
                                  f"before {role} can sign")
            now = self.clock.now()
            self.store.add_approval(conn, rev.id, "approve", by, now, role=role)
            self.store.audit(conn, now, by, "approve", item_id=item_id, revision=rev.number, role=role)
            return self.settle(conn, rev.id, actor=by)

    def reject(self, item_id: str, *, reason: str, by: str) -> None:
        if not reason.strip():
            raise ReviewError("a rejection needs a reason the editor can act on (--reason)")
        with self.store.tx() as conn:
            rev = self._current(conn, item_id)
            if rev.state not in IN_REVIEW:
                raise ReviewError(f"{item_id} revision {rev.number} is {rev.state}, not waiting for review")
            now = self.clock.now()
            self.store.add_approval(conn, rev.id, "reject", by, now, reason=reason)
            self.store.reject_revision(conn, rev.id)
            self.store.audit(conn, now, by, "reject", item_id=item_id, revision=rev.number, reason=reason)

    def override(self, item_id: str, *, reason: str, by: str) -> RevisionState:
        if not reason.strip():
            raise ReviewError("an override needs a reason for the audit log (--reason)")
        with self.store.tx() as conn:
            rev = self._current(conn, item_id)
            if rev.state != RevisionState.BLOCKED:
                raise ReviewError(f"{item_id} revision {rev.number} is {rev.state}; only a blocked item "
                                  "can be overridden")
            now = self.clock.now()
            self.store.add_approval(conn, rev.id, "override", by, now, reason=reason)
            self.store.audit(conn, now, by, "override", item_id=item_id, revision=rev.number, reason=reason,
                             findings=[f["text"] for f in rev.findings if is_blocking(f)])
            return self.settle(conn, rev.id, actor=by)

    def waiting(self) -> list[Waiting]:
        out = []
        for rev in self.store.revisions_in(IN_REVIEW):
            approvals = self.store.approvals(rev.id)
            out.append(Waiting(
                item_id=rev.item_id, revision=rev.number, title=rev.title, category=rev.category,
                state=rev.state, next_role=self._next_role(rev, approvals),
                signed=[a.role for a in approvals if a.action == "approve" and a.role], findings=rev.findings))
        return out

    def retract(self, item_id: str, *, by: str, reason: str = "") -> RevisionState:
        """Take the item down everywhere: a retraction revision, planned at once (no chain needed)."""
        with self.store.tx() as conn:
            rev = self._current(conn, item_id)
            now = self.clock.now()
            fields = {k: getattr(rev, k) for k in ("title", "category", "body", "summary", "doc_date", "source", "author",
                                          "channels", "attachments")}
            rid, number = self.store.add_revision(conn, {
                **fields, "item_id": item_id, "publish_at": None, "retract": True, "findings": [],
                "state": RevisionState.REVIEW, "file_name": None, "file_sha256": None}, now)
            self.store.audit(conn, now, by, "retract_requested", item_id=item_id, revision=number, reason=reason)
            return self.settle(conn, rid, actor=by)
