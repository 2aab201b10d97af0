"""The tables. Changes go through an alembic migration (publisher/store/migrations), never by hand."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Column,
    Computed,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import FunctionElement
from sqlalchemy.types import TypeDecorator

from publisher.model import APPROVAL_ACTIONS, IN_REVIEW, OPEN, TO_SEND, DeliveryState, RevisionState


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


class elapsed(FunctionElement[float]):  # noqa: N801 (an SQL function's name)
    """Seconds from one timestamp to another, to the millisecond, computed by the database (no datetime per
    row in Python). SQLite's julianday arithmetic carries ~30 µs of floating-point noise; the rounding drops it.
    PostgreSQL answers numeric (Decimal in Python)."""

    type = Float()
    inherit_cache = True


@compiles(elapsed, "sqlite")
def _elapsed_sqlite(element: elapsed, compiler: Any, **kw: Any) -> str:
    start, end = (compiler.process(arg, **kw) for arg in element.clauses)
    return f"round((julianday({end}) - julianday({start})) * 86400.0, 3)"


@compiles(elapsed)
def _elapsed_default(element: elapsed, compiler: Any, **kw: Any) -> str:
    start, end = (compiler.process(arg, **kw) for arg in element.clauses)
    return f"round(EXTRACT(EPOCH FROM ({end}) - ({start})), 3)"


def states_sql(states: Iterable[StrEnum], *, of: type[StrEnum]) -> str:
    """`'a', 'b'`: the states' values quoted, in the enum's declaration order (so the text is stable:
    planners match partial-index predicates verbatim)."""
    chosen = set(states)
    return ", ".join(f"'{s.value}'" for s in of if s in chosen)


def one_of(column: str, values: Iterable[str]) -> str:
    """`column IN ('a', 'b')`, the predicate of a CHECK constraint."""
    return f"{column} IN ({', '.join(repr(str(v)) for v in values)})"


metadata = MetaData(naming_convention={
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
})


def _ts(name: str, nullable: bool = True) -> Column[datetime]:
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
    # a RevisionState (publisher/model.py); `retract` marks a retraction revision
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
    CheckConstraint(one_of("state", RevisionState), name="state"),  # migration 0006
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
    CheckConstraint(one_of("action", APPROVAL_ACTIONS), name="action"),  # migration 0006
)

deliveries = Table(
    "deliveries", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("revision_id", Integer, ForeignKey("revisions.id"), nullable=False),
    Column("item_id", String(200), nullable=False),
    Column("channel", String(64), nullable=False),
    # a DeliveryState; its moves are publisher.model.TRANSITIONS
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
    _ts("retry_from"),  # the last manual retry: the retry budget's max_age counts from it, not from due_at (0004)
    # how far the send in flight got (an adapter's checkpoint, channels.base.Progress); cleared with its outcome (0010)
    Column("progress", JSON),
    _ts("lost_at"),  # when the channel took the live item down (deleted, banned): the "lost" alert's rows (0010)
    UniqueConstraint("revision_id", "channel"),
    Index("ix_deliveries_work", "state", "channel", "next_attempt_at"),
    Index("ix_deliveries_item", "item_id", "channel"),
    CheckConstraint(one_of("state", DeliveryState), name="state"),  # migration 0006
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

# --- the lag report (migration 0002) ---------------------------------------------------------------

# Rows due and not live, by channel and due time: the late list, the counts and the deadline
# candidates read only these few (a partial index: live and superseded rows are the million others).
# Queries repeat the predicate verbatim (publisher/store/reads.py) so that planners match it.
OPEN_ROWS_SQL = f"state NOT IN ({states_sql(frozenset(DeliveryState) - OPEN, of=DeliveryState)})"
Index("ix_deliveries_open", deliveries.c.channel, deliveries.c.due_at, deliveries.c.state, deliveries.c.revision_id,
      sqlite_where=text(OPEN_ROWS_SQL), postgresql_where=text(OPEN_ROWS_SQL))
# A live row's lag, live_at − due_at in seconds (migration 0005): a generated column (VIRTUAL on SQLite, STORED on
# PostgreSQL), so that it never disagrees with the two times; indexed, so that p50/p95/max read no timestamps.
deliveries.append_column(Column("lag_s", Float, Computed(elapsed(deliveries.c.due_at, deliveries.c.live_at))))
# p50/p95/max over a window: the live rows' lags by (channel, due_at); it also serves every (channel, due_at) range,
# so the index of those two alone (0001) is gone: SQLite's planner took it and computed each lag from the table.
Index("ix_deliveries_window", deliveries.c.channel, deliveries.c.due_at, deliveries.c.state, deliveries.c.lag_s)
# Revisions still waiting for sign-off: a handful among the many approved (the legal deadline's candidates).
IN_REVIEW_SQL = f"state IN ({states_sql(IN_REVIEW, of=RevisionState)})"
Index("ix_revisions_in_review", revisions.c.id, sqlite_where=text(IN_REVIEW_SQL), postgresql_where=text(IN_REVIEW_SQL))
# The newest live row per channel, and the freshness walk newest-first, read this index only.
Index("ix_deliveries_channel_live", deliveries.c.channel, deliveries.c.live_at)
# "Is this revision live on any channel?" for each deadline candidate, without reading the rows (0003).
LIVE_ROWS_SQL = f"state = '{DeliveryState.LIVE.value}'"
Index("ix_deliveries_live_revision", deliveries.c.revision_id, sqlite_where=text(LIVE_ROWS_SQL),
      postgresql_where=text(LIVE_ROWS_SQL))
# The client-side rate limit's "sends in the last hour", newest first, a few entries (0005).
Index("ix_deliveries_channel_sent", deliveries.c.channel, deliveries.c.sent_at)
# The workers' claims (0009): a channel's claimable rows in the order they are taken, so that a claim reads
# the first few index entries instead of sorting the channel's whole due set (`state IN` split ix_deliveries_work's
# order). Queries repeat CLAIMABLE_SQL verbatim (publisher/store/deliveries.py) so that planners match it.
CLAIMABLE_SQL = f"state IN ({states_sql(TO_SEND | {DeliveryState.SENT}, of=DeliveryState)})"
Index("ix_deliveries_claim", deliveries.c.channel, deliveries.c.next_attempt_at, deliveries.c.id,
      sqlite_where=text(CLAIMABLE_SQL), postgresql_where=text(CLAIMABLE_SQL))
# The rows a channel took down after they went live (0010): the "lost" alert reads these few, not the open rows.
LOST_ROWS_SQL = "lost_at IS NOT NULL"
Index("ix_deliveries_lost", deliveries.c.channel, deliveries.c.lost_at,
      sqlite_where=text(LOST_ROWS_SQL), postgresql_where=text(LOST_ROWS_SQL))
# Freshness of a rarely published category: its revisions first, then their rows on the channel.
Index("ix_revisions_category", revisions.c.category, revisions.c.id)

# One row per alert condition (a late delivery, a freshness or deadline warning): it is announced
# once when it opens, and only again after it has cleared and opened anew.
alert_events = Table(
    "alert_events", metadata,
    Column("key", String(400), primary_key=True),  # e.g. late:<delivery id>, freshness:<channel>:<category>
    Column("kind", String(32), nullable=False),  # late | freshness | deadline
    Column("channel", String(64)),
    Column("item_id", String(200)),
    _ts("opened_at", False),
    _ts("notified_at"),  # null until a webhook or e-mail took it (retried at the next check)
    _ts("cleared_at"),  # set when the condition recovers
    Column("detail", JSON, nullable=False),
    Index("ix_alert_events_open", "cleared_at", "notified_at"),
)

# --- reviewer accounts, their web sessions, and what reviewers were told (migration 0007) ------------

accounts = Table(
    "accounts", metadata,
    Column("name", String(100), primary_key=True),  # the login name, as the audit log records it
    Column("display_name", String(200), nullable=False),
    Column("roles", JSON, nullable=False),  # keys of config.yaml's roles the account may sign as
    Column("enabled", Boolean, nullable=False, default=True),
    Column("email", String(320)),
    Column("password_hash", Text),  # argon2id (argon2-cffi's encoded form); never the password
    Column("token_hash", String(64), unique=True),  # SHA-256 of the CLI token (the token itself is shown once)
    _ts("created_at", False),
    _ts("updated_at", False),
)

sessions = Table(
    "sessions", metadata,
    Column("id_hash", String(64), primary_key=True),  # SHA-256 of the session id the cookie carries
    Column("account", String(100), ForeignKey("accounts.name"), nullable=False, index=True),
    Column("remote", String(200)),
    _ts("created_at", False),
    _ts("expires_at", False),
    _ts("closed_at"),  # logout or revocation
)

# One row per (revision, role, kind) a reviewer was told about: a digest names each waiting revision
# once per role, an escalation is sent once per revision.
review_notices = Table(
    "review_notices", metadata,
    Column("revision_id", Integer, ForeignKey("revisions.id"), primary_key=True),
    Column("role", String(64), primary_key=True),
    Column("kind", String(16), primary_key=True),  # digest | escalation
    _ts("at", False),
)

# --- district sources (migration 0008) --------------------------------------------------------------

# One row per configured feed: what the last poll found (publisher/intake/sources.py writes it).
source_state = Table(
    "source_state", metadata,
    Column("source", String(64), primary_key=True),  # the key under config.yaml's `sources:`
    Column("etag", Text),  # the validators of the last good answer, for a conditional GET
    Column("last_modified", Text),
    _ts("last_attempt_at"),
    _ts("last_success_at"),  # the last poll that read the feed (a 304 counts)
    _ts("last_error_at"),
    Column("last_error", Text),  # cleared by the next good poll
    Column("entries", Integer, nullable=False, default=0),  # entries in the feed at the last good read
    _ts("last_import_at"),  # the last time an entry became a new item or revision
    _ts("created_at", False),  # the first poll: a feed never read since is silent from then on
)

# Which item each feed entry became: an entry is known by its id, else its link, forever. The row is written
# before the item's revision, in the same transaction, so that review finds the item's source as it settles.
source_entries = Table(
    "source_entries", metadata,
    Column("source", String(64), primary_key=True),
    Column("key_sha256", String(64), primary_key=True),  # of the entry's id (or link): ids may be long URLs
    Column("entry_key", Text, nullable=False),
    Column("item_id", String(200), nullable=False),  # no foreign key: written just before the item (see above)
    Column("link", Text),  # the entry's link on the district's own site
    Column("content_sha256", String(64), nullable=False),  # of what was imported last: a change is an edit
    Column("revision", Integer, nullable=False),  # the item's revision that import made
    _ts("first_seen_at", False),
    _ts("updated_at", False),
    Index("ix_source_entries_item", "item_id"),
)
