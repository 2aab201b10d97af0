"""District sources: each feed's polling state, and which item each feed entry became

Revision ID: 0008
Revises: 0007

Two new tables; nothing existing changes, so no row can be lost.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "source_state",
        sa.Column("source", sa.String(64), primary_key=True),
        sa.Column("etag", sa.Text()),
        sa.Column("last_modified", sa.Text()),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True)),
        sa.Column("last_success_at", sa.DateTime(timezone=True)),
        sa.Column("last_error_at", sa.DateTime(timezone=True)),
        sa.Column("last_error", sa.Text()),
        sa.Column("entries", sa.Integer(), nullable=False),
        sa.Column("last_import_at", sa.DateTime(timezone=True)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("source", name="pk_source_state"),
    )
    op.create_table(
        "source_entries",
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("key_sha256", sa.String(64), nullable=False),
        sa.Column("entry_key", sa.Text(), nullable=False),
        sa.Column("item_id", sa.String(200), nullable=False),
        sa.Column("link", sa.Text()),
        sa.Column("content_sha256", sa.String(64), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("source", "key_sha256", name="pk_source_entries"),
    )
    op.create_index("ix_source_entries_item", "source_entries", ["item_id"])


def downgrade() -> None:
    op.drop_index("ix_source_entries_item", table_name="source_entries")
    op.drop_table("source_entries")
    op.drop_table("source_state")
