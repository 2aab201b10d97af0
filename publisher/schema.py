"""The tables. Changes go through an alembic migration (publisher/migrations), never by hand."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on every backend (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use an aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

metadata = MetaData(naming_convention={
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
})


def _ts(name: str, nullable: bool = True) -> Column:
    return Column(name, UTCDateTime(), nullable=nullable)


items = Table(
    "items", metadata,
    Column("id", String(200), primary_key=True),
    Column("category", String(64), nullable=False),
    Column("title", Text, nullable=False),
    Column("current_revision", Integer, nullable=False),  # the newest revision number
    Column("retracted", Boolean, nullable=False, default=False),
    _ts("created_at", False),
    _ts("updated_at", False),
)

revisions = Table(
    "revisions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("item_id", String(200), ForeignKey("items.id"), nullable=False),
    Column("number", Integer, nullable=False),
    # review → approved | blocked (screen hit) | rejected | superseded; retract for retraction revisions
    Column("state", String(16), nullable=False),
    Column("title", Text, nullable=False),
    Column("category", String(64), nullable=False),
    Column("body", Text, nullable=False),
    Column("summary", Text),
    Column("doc_date", Date),
    Column("source", String(200)),
    Column("author", String(200)),
    Column("publish_at", UTCDateTime()),
    Column("channels", JSON, nullable=False),  # the routed channel roles
    Column("attachments", JSON, nullable=False),  # [{name, path, size, content_type}]
    Column("retract", Boolean, nullable=False, default=False),
    Column("findings", JSON, nullable=False),  # confidentiality screen hits
    Column("file_name", String(400)),
    Column("file_sha256", String(64)),
    _ts("created_at", False),
    _ts("approved_at"),
    UniqueConstraint("item_id", "number"),
    Index("ix_revisions_state", "state"),
    Index("ix_revisions_file_sha256", "file_sha256"),
)

approvals = Table(
    "approvals", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("revision_id", Integer, ForeignKey("revisions.id"), nullable=False, index=True),
    Column("action", String(16), nullable=False),  # approve | reject | override
    Column("role", String(64)),
    Column("by", String(200), nullable=False),
    Column("reason", Text),
    _ts("at", False),
)

deliveries = Table(
    "deliveries", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("revision_id", Integer, ForeignKey("revisions.id"), nullable=False),
    Column("item_id", String(200), nullable=False),
    Column("channel", String(64), nullable=False),
    # waiting (for link_from) → pending → sending → sent → live; retrying; failed; manual; superseded
    Column("state", String(16), nullable=False),
    Column("retract", Boolean, nullable=False, default=False),
    _ts("due_at", False),  # approval, or publish_at when later
    _ts("next_attempt_at", False),  # when the worker may take it (send, retry, or verify)
    Column("attempts", Integer, nullable=False, default=0),
    Column("verify_attempts", Integer, nullable=False, default=0),
    Column("lease_owner", String(64)),
    _ts("lease_until"),
    _ts("sent_at"),
    _ts("live_at"),
    Column("remote_id", String(400)),
    Column("url", Text),
    Column("last_error", Text),
    _ts("created_at", False),
    _ts("updated_at", False),
    UniqueConstraint("revision_id", "channel"),
    Index("ix_deliveries_work", "state", "channel", "next_attempt_at"),
    Index("ix_deliveries_channel_due", "channel", "due_at"),
    Index("ix_deliveries_item", "item_id", "channel"),
)

# Where each item currently lives on each channel (the receipt of the last successful send).
placements = Table(
    "placements", metadata,
    Column("item_id", String(200), primary_key=True),
    Column("channel", String(64), primary_key=True),
    Column("remote_id", String(400), nullable=False),
    Column("url", Text),
    Column("extra", JSON, nullable=False),
    Column("revision", Integer, nullable=False),
    Column("retracted", Boolean, nullable=False, default=False),
    _ts("updated_at", False),
)

audit = Table(
    "audit", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    _ts("at", False),
    Column("actor", String(200), nullable=False),  # a person's name, or "daemon"
    Column("action", String(32), nullable=False),  # ingest, approve, reject, override, send, retry, retract, ...
    Column("item_id", String(200)),
    Column("revision", Integer),
    Column("channel", String(64)),
    Column("detail", JSON, nullable=False),
    Index("ix_audit_item", "item_id", "id"),
)
