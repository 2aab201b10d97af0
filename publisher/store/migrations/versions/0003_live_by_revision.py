"""lag report: which revisions are live somewhere, read from an index (the legal-deadline check)

Revision ID: 0003
Revises: 0002
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

LIVE_ROWS = "state = 'live'"


def upgrade() -> None:
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.create_index('ix_deliveries_live_revision', ['revision_id'], unique=False,
                              sqlite_where=sa.text(LIVE_ROWS), postgresql_where=sa.text(LIVE_ROWS))


def downgrade() -> None:
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_deliveries_live_revision')
