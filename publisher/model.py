"""The core's vocabulary: the revision every adapter receives, the two state machines and their allowed
transitions (spelled in publisher/states.py, re-exported here), and the delivery row as the core reads it.

Imports nothing of the project but the standard library, pydantic, publisher.states and the error root
(publisher.errors), so that every unit (the adapters in channels/ included) may import it, and it
imports none of them.
"""

from __future__ import annotations

import datetime as dt
import mimetypes
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from publisher.errors import PublisherError
from publisher.states import (
    ACTIVE,
    APPROVAL_ACTIONS,
    IN_REVIEW,
    OPEN,
    REPLACEABLE,
    REVISION_TRANSITIONS,
    TAKEN_DOWN,
    TO_SEND,
    TRANSITIONS,
    DeliveryState,
    RevisionState,
    sources,
)


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
    progress: dict[str, Any] | None = None  # the send in flight's last checkpoint (channels.base.Progress)
    lost_at: datetime | None = None  # when the channel took the live item down
    revision: int | None = None

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> Delivery:
        return cls(**_columns(cls, row, state=DeliveryState(row["state"]), retract=bool(row["retract"])))


@dataclass(frozen=True, slots=True)
class StoredRevision:
    """One row of the revisions table, as review, dispatch and the command line read it. (`Revision` is
    what an adapter receives; it is made from this one by publisher.dispatch.outbox.)"""

    id: int
    item_id: str
    number: int
    state: RevisionState
    title: str
    category: str
    body: str
    summary: str | None
    doc_date: dt.date | None
    source: str | None
    author: str | None
    publish_at: datetime | None
    channels: list[str]  # the item file's own routing; empty: the category's
    attachments: list[dict[str, Any]]  # [{name, path, size, content_type}]
    retract: bool
    findings: list[dict[str, Any]]  # the confidentiality screen's hits
    file_name: str | None
    file_sha256: str | None
    created_at: datetime
    approved_at: datetime | None

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> StoredRevision:
        return cls(**_columns(cls, row, state=RevisionState(row["state"]), retract=bool(row["retract"]),
                              channels=list(row["channels"] or []), attachments=list(row["attachments"] or []),
                              findings=list(row["findings"] or [])))


@dataclass(frozen=True, slots=True)
class Approval:
    """One reviewer's action on a revision: a sign-off under a role, a rejection or an override."""

    id: int
    revision_id: int
    action: str  # one of APPROVAL_ACTIONS
    role: str | None
    by: str
    reason: str | None
    at: datetime

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> Approval:
        return cls(**_columns(cls, row))


@dataclass(frozen=True, slots=True)
class Placement:
    """Where an item currently lives on a channel: the receipt of the last successful send."""

    item_id: str
    channel: str
    remote_id: str
    url: str | None
    extra: dict[str, Any]
    revision: int  # 0 after a retraction
    retracted: bool
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> Placement:
        return cls(**_columns(cls, row, extra=dict(row["extra"] or {}), retracted=bool(row["retracted"])))


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One line of the audit log: who (a person's name, or "daemon") did what, when, to which item."""

    id: int
    at: datetime
    actor: str
    action: str
    item_id: str | None
    revision: int | None
    channel: str | None
    detail: dict[str, Any]

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> AuditEntry:
        return cls(**_columns(cls, row, detail=dict(row["detail"] or {})))


@dataclass(frozen=True, slots=True)
class ItemSummary:
    """An item with the state of its current revision, as the item list shows it."""

    id: str
    category: str
    title: str
    current_revision: int
    retracted: bool
    updated_at: datetime
    revision_state: RevisionState

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> ItemSummary:
        return cls(**_columns(cls, row, retracted=bool(row["retracted"]),
                              revision_state=RevisionState(row["revision_state"])))


def _columns(cls: type, row: Mapping[Any, Any], **converted: Any) -> dict[str, Any]:
    """The row's values for the dataclass's fields (columns it does not have are left to their
    defaults), with the converted ones taking precedence."""
    names = _field_names(cls)
    try:  # a whole table row, the usual case: no membership test per field (the claim makes hundreds a second)
        values = {name: row[name] for name in names}
    except KeyError:  # a row without some of them (a join's subset): those keep their defaults
        values = {name: row[name] for name in names if name in row}
    return {**values, **converted}


@cache  # rows are made on the dispatcher's hot path: read each class's fields once
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))

__all__ = ["ACTIVE", "APPROVAL_ACTIONS", "IN_REVIEW", "OPEN", "REPLACEABLE", "REVISION_TRANSITIONS", "TAKEN_DOWN",
           "TO_SEND", "TRANSITIONS", "Approval", "Attachment", "AuditEntry", "Delivery", "DeliveryState",
           "IllegalTransition", "ItemSummary", "Placement", "Revision", "RevisionState", "StoredRevision",
           "sources"]
