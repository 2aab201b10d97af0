"""The core's vocabulary: the revision every adapter receives, and the two state machines.

Imports nothing of the project but the standard library and pydantic, so that every unit (the
adapters in channels/ included) may import it, and it imports none of them.
"""

from __future__ import annotations

import datetime as dt
import mimetypes
from datetime import datetime
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


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
