"""The core's vocabulary: the revision every adapter receives, the two state machines, their allowed
transitions, and the delivery row as the core reads it.

Imports nothing of the project but the standard library, pydantic and the error root (publisher.errors),
so that every unit (the adapters in channels/ included) may import it, and it imports none of them.
"""

from __future__ import annotations

import datetime as dt
import mimetypes
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from publisher.errors import PublisherError


class Attachment(BaseModel):
    """A file that travelled beside the item file; `path` points into the archive."""

    model_config = ConfigDict(frozen=True)

    name: str
    path: Path
    size: int
    content_type: str = "application/octet-stream"

    @classmethod
    def of(cls, name: str, path: Path) -> Attachment:
        ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
        return cls(name=name, path=path, size=path.stat().st_size, content_type=ctype)


class Revision(BaseModel):
    """One revision of one item, as every channel adapter receives it.

    `revision` counts from 1; a file with a known `id` makes the next one. `link` is the public
    URL of the item on the channel named by the receiving channel's `link_from` (the microblog
    links to the bureau's own article), filled in by the dispatcher once that channel has it.
    """

    model_config = ConfigDict(frozen=True)

    item_id: str
    revision: int = 1
    title: str
    category: str
    category_name: str = ""
    body: str = ""
    summary: str | None = None
    date: dt.date | None = None
    source: str | None = None
    author: str | None = None
    publish_at: datetime | None = None
    attachments: tuple[Attachment, ...] = ()
    created_at: datetime
    link: str | None = None
    tags: tuple[str, ...] = Field(default=())

    @property
    def idempotency_key(self) -> str:
        """Stable for this item revision: a repeat of the same send carries the same key."""
        return f"{self.item_id}:{self.revision}"

    @property
    def short_summary(self) -> str:
        """The summary, or the body's first paragraph stripped of Markdown marks."""
        if self.summary:
            return self.summary.strip()
        for para in self.body.split("\n\n"):
            text = " ".join(line.strip().lstrip("#>*-+ ").strip() for line in para.splitlines()).strip()
            if text:
                return text
        return self.title


class RevisionState(StrEnum):
    """Where one revision stands in review. The only place these states are spelled."""

    REVIEW = "review"  # waiting for the next sign-off of its category's chain
    BLOCKED = "blocked"  # the confidentiality screen found something; waits for an override
    APPROVED = "approved"  # chain complete and screen passed (or overridden): deliveries planned
    REJECTED = "rejected"  # sent back by a reviewer
    SUPERSEDED = "superseded"  # a newer revision of the item arrived before this one was approved


class DeliveryState(StrEnum):
    """Where one (revision, channel) delivery stands. The only place these states are spelled.

    waiting (for its `link_from` channel's URL) → pending → sending → sent → live; a transient failure
    goes to retrying (due again later), a permanent one or a spent retry budget to failed; what the
    protocol cannot do is a manual task; a newer revision supersedes rows not yet sent.
    """

    WAITING = "waiting"
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    LIVE = "live"
    RETRYING = "retrying"
    FAILED = "failed"
    MANUAL = "manual"
    SUPERSEDED = "superseded"


# Rows not yet sent: a newer revision of the item supersedes them.
ACTIVE = frozenset({DeliveryState.WAITING, DeliveryState.PENDING, DeliveryState.RETRYING})
# Rows a worker claims to send.
TO_SEND = frozenset({DeliveryState.PENDING, DeliveryState.RETRYING})
# Rows due and not live: the lag report's open rows.
OPEN = frozenset(DeliveryState) - {DeliveryState.LIVE, DeliveryState.SUPERSEDED}
# Revisions still waiting for a person (the legal deadline's candidates).
IN_REVIEW = frozenset({RevisionState.REVIEW, RevisionState.BLOCKED})

# The only moves a delivery may make, from → to. The store guards each UPDATE with the from-states of
# its transition, so a row that moved on meanwhile (a person's retry, a newer revision) is never
# overwritten by a late outcome; a new row starts as waiting, pending or failed (publisher.dispatch.outbox).
TRANSITIONS: dict[DeliveryState, frozenset[DeliveryState]] = {
    DeliveryState.WAITING: frozenset({DeliveryState.PENDING, DeliveryState.FAILED, DeliveryState.SUPERSEDED}),
    DeliveryState.PENDING: frozenset({DeliveryState.SENDING, DeliveryState.SUPERSEDED}),
    DeliveryState.RETRYING: frozenset({DeliveryState.SENDING, DeliveryState.PENDING, DeliveryState.SUPERSEDED}),
    # sent, or live at once for a retraction; retry, fail, manual task; pending again when reconciled
    DeliveryState.SENDING: frozenset({DeliveryState.SENT, DeliveryState.LIVE, DeliveryState.RETRYING,
                                      DeliveryState.FAILED, DeliveryState.MANUAL, DeliveryState.PENDING}),
    # seen; not yet (checked again later); unseen and sent once more; a verify that hit an adapter defect
    DeliveryState.SENT: frozenset({DeliveryState.LIVE, DeliveryState.SENT, DeliveryState.PENDING,
                                   DeliveryState.FAILED}),
    DeliveryState.FAILED: frozenset({DeliveryState.PENDING}),  # a person's retry
    DeliveryState.LIVE: frozenset(),
    DeliveryState.MANUAL: frozenset(),
    DeliveryState.SUPERSEDED: frozenset(),
}

# A revision waits in review or blocked until it is approved, rejected or superseded by a newer one;
# review ↔ blocked as the screen's findings and the overrides come and go.
REVISION_TRANSITIONS: dict[RevisionState, frozenset[RevisionState]] = {
    RevisionState.REVIEW: frozenset(RevisionState),
    RevisionState.BLOCKED: frozenset(RevisionState),
    RevisionState.APPROVED: frozenset(),
    RevisionState.REJECTED: frozenset(),
    RevisionState.SUPERSEDED: frozenset(),
}

# What a reviewer's sign-off row records (approvals.action).
APPROVAL_ACTIONS = ("approve", "reject", "override")


def sources(to: DeliveryState) -> frozenset[DeliveryState]:
    """The states a delivery may reach `to` from."""
    return frozenset(s for s, targets in TRANSITIONS.items() if to in targets)


class IllegalTransition(PublisherError):
    """A state change the row's current state does not allow (or a row that does not exist).

    Usually the row moved on meanwhile (a person retried it, a newer revision superseded it): the
    outcome that raised this is stale and was not recorded; `publisher show ITEM` shows where it stands."""

    def __init__(self, *, table: str, row_id: int, current: str | None, transition: str, to: str) -> None:
        self.table, self.row_id, self.current, self.transition, self.to = table, row_id, current, transition, to
        where = "does not exist" if current is None else f"is {current}"
        super().__init__(f"{table} row {row_id} {where}: cannot {transition} (→ {to}); "
                         "`publisher show ITEM` shows where it stands")


@dataclass(frozen=True, slots=True)
class Delivery:
    """One row of the deliveries table, as the core reads it (`revision` is the revision's number,
    present when the row was read together with its revision)."""

    id: int
    revision_id: int
    item_id: str
    channel: str
    state: DeliveryState
    retract: bool
    due_at: datetime
    next_attempt_at: datetime
    attempts: int
    verify_attempts: int
    lease_owner: str | None
    lease_until: datetime | None
    sent_at: datetime | None
    live_at: datetime | None
    remote_id: str | None
    url: str | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    retry_from: datetime | None
    revision: int | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Delivery:
        values = {name: row[name] for name in _DELIVERY_FIELDS if name in row}
        values["state"] = DeliveryState(row["state"])
        values["retract"] = bool(row["retract"])
        return cls(**values)

    def __getitem__(self, key: str) -> Any:
        """Mapping-style access, for readers written against the store's earlier plain rows."""
        if key not in _DELIVERY_FIELDS:
            raise KeyError(key)
        return getattr(self, key)


_DELIVERY_FIELDS = frozenset(f.name for f in fields(Delivery))
