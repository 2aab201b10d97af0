"""Reviewer accounts, their web sessions, and the notices reviewers were sent

Revision ID: 0007
Revises: 0006

New tables only: no existing row is touched. `accounts` (name, display name, roles, enabled, e-mail,
the argon2 hash of the password and the SHA-256 of the CLI token), `sessions` (the web desk's
server-side sessions, by the SHA-256 of their id, with expiry and logout) and `review_notices` (which
waiting revision was named in which role's digest, and which was escalated).
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def _ts(name: str, nullable: bool = True) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("display_name", sa.String(200), nullable=False),
        sa.Column("roles", sa.JSON(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("email", sa.String(320)),
        sa.Column("password_hash", sa.Text()),
        sa.Column("token_hash", sa.String(64)),
        _ts("created_at", False),
        _ts("updated_at", False),
        sa.PrimaryKeyConstraint("name", name="pk_accounts"),
        sa.UniqueConstraint("token_hash", name="uq_accounts_token_hash"),
    )
    op.create_table(
        "sessions",
        sa.Column("id_hash", sa.String(64), nullable=False),
        sa.Column("account", sa.String(100), nullable=False),
        sa.Column("remote", sa.String(200)),
        _ts("created_at", False),
        _ts("expires_at", False),
        _ts("closed_at"),
        sa.PrimaryKeyConstraint("id_hash", name="pk_sessions"),
        sa.ForeignKeyConstraint(["account"], ["accounts.name"], name="fk_sessions_account_accounts"),
    )
    op.create_index("ix_sessions_account", "sessions", ["account"])
    op.create_table(
        "review_notices",
        sa.Column("revision_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        _ts("at", False),
        sa.PrimaryKeyConstraint("revision_id", "role", "kind", name="pk_review_notices"),
        sa.ForeignKeyConstraint(["revision_id"], ["revisions.id"], name="fk_review_notices_revision_id_revisions"),
    )


def downgrade() -> None:
    op.drop_table("review_notices")
    op.drop_index("ix_sessions_account", "sessions")
    op.drop_table("sessions")
    op.drop_table("accounts")
