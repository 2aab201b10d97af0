"""Review: the category's chain of sign-offs, the confidentiality screen, and overrides.

A revision is approved when its chain is complete (in order) and the screen found nothing, or a
reviewer overrode the findings with a reason. Approval plans its deliveries. Every action is taken by
an authenticated `Account` (publisher/review/accounts.py), re-read from the store at the moment it
acts (a disabled account signs nothing), under the rules of publisher/review/rules.py, and lands in the
audit log with the account, the time and, for the web, the remote address. A retraction dropped in the
queue waits for a sign-off by a `review.retract_roles` account; `Review.retract`, asked for by such an
account, is signed at once. A rejection leaves the editor a note in queue/returned/.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from typing import Any

import structlog
from sqlalchemy.engine import Connection

from publisher.clock import Clock
from publisher.config.screen import WordingRule
from publisher.config.settings import Config
from publisher.dispatch.outbox import plan_publication, plan_retraction
from publisher.errors import PublisherError
from publisher.model import IN_REVIEW, Approval, IllegalTransition, RevisionState, StoredRevision
from publisher.review import rules
from publisher.review.accounts import Account
from publisher.review.returned import write_note
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
    revision_id: int = 0
    author: str | None = None
    created_at: datetime | None = None  # waiting since
    doc_date: date | None = None  # the legal deadline counts from it
    retract: bool = False
    may_sign: tuple[str, ...] = ()  # the roles any one of which may sign the next step
    signed_by: tuple[str, ...] = ()  # the accounts that signed a step already
    chain: tuple[str, ...] = ()  # the chain it needs (a stricter earlier category's, see rules.chain_for)
    may_override: tuple[str, ...] = ()  # blocked by the screen: the roles that may release it


@dataclass(frozen=True)
class Outcome:
    """One item of a batch sign-off: approved (and its state now), or refused with the reason in words."""

    item_id: str
    ok: bool
    state: RevisionState | None = None
    reason: str | None = None


@lru_cache(maxsize=8)
def _rules(terms: tuple[str, ...], starter: bool, own: tuple[WordingRule, ...]) -> Rules:
    return Rules.of(terms, Dictionary((starter_rules() if starter else ()) + own))


def screen_rules(config: Config) -> Rules:
    """The configured terms and the wording dictionary: the shipped one (unless `screen.starter: false`)
    and config.yaml's own entries; compiled once per configuration (the key holds config.yaml's own rules, not
    the shipped ones, which are the same in every configuration: a key of every rule was hashed at every item)."""
    return _rules(tuple(config.screen.terms), config.screen.starter, tuple(config.screen.wording_rules()))


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

    def settle(self, conn: Connection, revision_id: int, actor: str = "daemon", *,
               added: StoredRevision | None = None) -> RevisionState:
        """Move a revision as far as it can go by itself: approve it when nothing is missing. `added`: the
        revision as this transaction inserted it a moment ago (no sign-off can have reached it yet), so that
        neither it nor its sign-offs are read back."""
        rev = self.store.revision_by_id(conn, revision_id) if added is None else added
        if rev.state not in IN_REVIEW:  # approved, rejected or superseded: nothing left to settle
            return RevisionState(rev.state)
        now = self.clock.now()
        approvals = self.store.approvals(revision_id, conn) if added is None else []
        if rev.retract:
            # Taking an item down waits for one sign-off by a retract_roles account; it is never blocked.
            if not any(a.action == "approve" for a in approvals):
                return RevisionState.REVIEW
            self.store.approve_revision(conn, revision_id, now)
            held = plan_retraction(conn, self.store, self.config, rev, now)
            self.store.audit(conn, now, actor, "retract", item_id=rev.item_id, revision=rev.number,
                             channels=held)
            return RevisionState.APPROVED
        overridden = any(a.action == "override" for a in approvals)
        if any(is_blocking(f) for f in rev.findings) and not overridden:
            self.store.block_revision(conn, revision_id)
            return RevisionState.BLOCKED
        if rules.next_step(self._chain(conn, rev), approvals) is not None:
            self.store.await_review(conn, revision_id)
            return RevisionState.REVIEW
        self.store.approve_revision(conn, revision_id, now)
        channels = plan_publication(conn, self.store, self.config, rev, now)
        self.store.audit(conn, now, actor, "approved", item_id=rev.item_id, revision=rev.number,
                         channels=channels, publish_at=rev.publish_at.isoformat() if rev.publish_at else None)
        log.info("review.approved", item_id=rev.item_id, revision=rev.number, channels=channels)
        return RevisionState.APPROVED

    def _chain(self, conn: Connection, rev: StoredRevision) -> list[str]:
        """The revision's chain: its category's, or a stricter one an earlier revision's category had; for an
        entry of a district feed whose config gives one, the source's own (an outside body's text is read
        before the bureau reposts it)."""
        if any(s.review is not None for s in self.config.sources.values()):
            source = self.store.item_source(rev.item_id, conn)
            if source in self.config.sources and (own := self.config.sources[source].review) is not None:
                return list(own)
        earlier = self.store.earlier_categories(conn, rev.item_id, rev.number) if rev.number > 1 else []
        return rules.chain_for(self.config, rev.category, earlier)

    # --- reviewers' actions ------------------------------------------------------------------------

    def _current(self, conn: Connection, item_id: str, revision: int | None = None) -> StoredRevision:
        """The item's newest revision; `revision`: the one the reviewer read, refused when a newer one came."""
        rev = self.store.revision(item_id, conn=conn)
        if rev is None:
            raise ReviewError(f"no item with id {item_id!r}; `publisher items` lists them")
        if revision is not None and revision != rev.number:
            raise ReviewError(f"{item_id} has a newer revision ({rev.number}) than the one you read ({revision}); "
                              "read it before you act")
        return rev

    def _account(self, conn: Connection, actor: Account) -> Account:
        """The acting account as the store holds it now (roles changed, disabled since it logged in)."""
        row = self.store.account_row(actor.name, conn)
        if row is None or not row["enabled"]:
            raise ReviewError(f"account {actor.name!r} is unknown or disabled: only an enabled account "
                              "signs (`publisher users list`)")
        return Account.from_row(row)

    def _waiting(self, conn: Connection, item_id: str, revision: int | None = None) -> StoredRevision:
        rev = self._current(conn, item_id, revision)
        if rev.state not in IN_REVIEW:
            raise ReviewError(f"{item_id} revision {rev.number} is {rev.state}, not waiting for review")
        return rev

    def approve(self, item_id: str, actor: Account, role: str | None = None, remote: str | None = None,
                revision: int | None = None) -> RevisionState:
        """Sign the revision's next step as `role` (default: that step, when the account holds it);
        `revision`: the revision the reviewer read (a newer one is not signed unseen)."""
        with self.store.tx() as conn:
            account = self._account(conn, actor)
            rev = self._waiting(conn, item_id, revision)
            approvals = self.store.approvals(rev.id, conn)
            if rev.retract:
                role = self._retract_role(rev, approvals, account, role)
            else:
                expected = rules.next_step(self._chain(conn, rev), approvals)
                if expected is None:
                    raise ReviewError(f"{item_id} needs no further sign-off; it is blocked by the confidentiality "
                                      "screen: see `publisher show` and use `publisher override` if it is safe")
                role = role or expected
                refusal = rules.sign_refusal(self.config, rev, approvals, account, role, expected)
                if refusal:
                    raise ReviewError(refusal)
            now = self.clock.now()
            self.store.add_approval(conn, rev.id, "approve", account.name, now, role=role)
            self.store.audit(conn, now, account.name, "approve", item_id=item_id, revision=rev.number, role=role,
                             remote=remote)
            return self.settle(conn, rev.id, actor=account.name)

    def _retract_role(self, rev: StoredRevision, approvals: list[Approval], account: Account,
                      role: str | None) -> str:
        if any(a.action == "approve" for a in approvals):
            raise ReviewError(f"{rev.item_id}'s retraction is signed already")
        refusal = (rules.special_refusal(self.config, account, "retract_roles", "take an item down")
                   or rules.author_refusal(self.config, rev, account, "sign the retraction of"))
        if refusal:
            raise ReviewError(refusal)
        if role is not None and (role not in self.config.review.retract_roles or role not in account.roles):
            raise ReviewError(f"a retraction is signed as one of {', '.join(self.config.review.retract_roles)} "
                              f"(review.retract_roles), and {account.label()} must hold it")
        return role or rules.held(self.config, account, "retract_roles")

    def approve_many(self, item_ids: Iterable[str], actor: Account, role: str | None = None,
                     remote: str | None = None, revisions: Mapping[str, int] | None = None) -> list[Outcome]:
        """Sign each item in turn (each its own transaction and audit entry); one that cannot be signed is
        named with the reason, and the others still go through. `revisions`: item → the revision read."""
        out = []
        for item_id in dict.fromkeys(item_ids):  # once each, in the order given
            try:
                read = (revisions or {}).get(item_id)
                out.append(Outcome(item_id, True, self.approve(item_id, actor, role, remote, read)))
            except (ReviewError, IllegalTransition) as exc:
                out.append(Outcome(item_id, False, reason=str(exc)))
        return out

    def reject(self, item_id: str, actor: Account, reason: str, remote: str | None = None,
               revision: int | None = None) -> None:
        """Send the revision back; the editor finds queue/returned/ID.r<N>.txt."""
        if not reason.strip():
            raise ReviewError("a rejection needs a reason the editor can act on (--reason)")
        with self.store.tx() as conn:
            account = self._account(conn, actor)
            rev = self._waiting(conn, item_id, revision)
            may = set(self._chain(conn, rev)) | set(self.config.review.override_roles)
            if rev.retract:
                may = set(self.config.review.retract_roles)
            if not may & account.roles:
                raise ReviewError(f"{account.label()} holds none of the roles that review {item_id} "
                                  f"({', '.join(sorted(may)) or 'none'}) and cannot send it back")
            now = self.clock.now()
            self.store.add_approval(conn, rev.id, "reject", account.name, now, reason=reason)
            self.store.reject_revision(conn, rev.id)
            self.store.audit(conn, now, account.name, "reject", item_id=item_id, revision=rev.number, reason=reason,
                             remote=remote)
        try:
            path = write_note(self.config.queue_dir, item_id, rev.number, rev.title, account.label(), now, reason)
        except OSError as exc:  # the rejection stands and the audit log holds the same facts
            log.error("review.note_failed", item_id=item_id, revision=rev.number, error=str(exc))
        else:
            log.info("review.returned", item_id=item_id, revision=rev.number, note=str(path))

    def override(self, item_id: str, actor: Account, reason: str, remote: str | None = None,
                 revision: int | None = None) -> RevisionState:
        """Release a revision the confidentiality screen blocked (an `override_roles` account, with a reason)."""
        if not reason.strip():
            raise ReviewError("an override needs a reason for the audit log (--reason)")
        with self.store.tx() as conn:
            account = self._account(conn, actor)
            rev = self._current(conn, item_id, revision)
            if rev.state != RevisionState.BLOCKED:
                raise ReviewError(f"{item_id} revision {rev.number} is {rev.state}; only a blocked item "
                                  "can be overridden")
            refusal = (rules.special_refusal(self.config, account, "override_roles", "override a screen finding")
                       or rules.author_refusal(self.config, rev, account, "override"))
            if refusal:
                raise ReviewError(refusal)
            now = self.clock.now()
            role = rules.held(self.config, account, "override_roles")
            self.store.add_approval(conn, rev.id, "override", account.name, now, role=role, reason=reason)
            self.store.audit(conn, now, account.name, "override", item_id=item_id, revision=rev.number,
                             reason=reason, role=role, remote=remote,
                             findings=[f["text"] for f in rev.findings if is_blocking(f)])
            return self.settle(conn, rev.id, actor=account.name)

    def waiting(self, account: Account | None = None) -> list[Waiting]:
        """What waits for review; with `account`, only what that account may sign (or release) now."""
        out = []
        with self.store.read() as conn:
            for rev in self.store.revisions_in(IN_REVIEW):
                approvals = self.store.approvals(rev.id, conn)
                if rev.retract:
                    nxt = None if approvals else next(iter(self.config.review.retract_roles), None)
                    may = tuple(self.config.review.retract_roles) if nxt else ()
                    chain: list[str] = []
                else:
                    chain = self._chain(conn, rev)
                    nxt = rules.next_step(chain, approvals)
                    may = (nxt,) if nxt else ()
                signers = tuple(a.by for a in approvals if a.action == "approve")
                release = tuple(self.config.review.override_roles) if rev.state == RevisionState.BLOCKED else ()
                if account is not None and not (set(may + release) & account.roles):
                    continue
                out.append(Waiting(
                    item_id=rev.item_id, revision=rev.number, title=rev.title, category=rev.category,
                    state=rev.state, next_role=nxt, findings=rev.findings,
                    signed=[a.role for a in approvals if a.action == "approve" and a.role],
                    revision_id=rev.id, author=rev.author, created_at=rev.created_at, doc_date=rev.doc_date,
                    retract=rev.retract, may_sign=may, signed_by=signers, chain=tuple(chain),
                    may_override=release))
        return out

    def retract(self, item_id: str, actor: Account, reason: str = "", remote: str | None = None) -> RevisionState:
        """Take the item down everywhere: a retraction revision, signed at once by the asking
        `retract_roles` account and planned."""
        with self.store.tx() as conn:
            account = self._account(conn, actor)
            refusal = rules.special_refusal(self.config, account, "retract_roles", "take an item down")
            if refusal:
                raise ReviewError(refusal)
            rev = self._current(conn, item_id)
            now = self.clock.now()
            fields = {k: getattr(rev, k) for k in ("title", "category", "body", "summary", "doc_date", "source", "author",
                                          "channels", "attachments")}
            rid, number = self.store.add_revision(conn, {
                **fields, "item_id": item_id, "publish_at": None, "retract": True, "findings": [],
                "state": RevisionState.REVIEW, "file_name": None, "file_sha256": None}, now)
            self.store.audit(conn, now, account.name, "retract_requested", item_id=item_id, revision=number,
                             reason=reason, remote=remote)
            role = rules.held(self.config, account, "retract_roles")
            self.store.add_approval(conn, rid, "approve", account.name, now, role=role, reason=reason or None)
            return self.settle(conn, rid, actor=account.name)
