"""deliveries.progress and deliveries.lost_at: resuming a multi-step send, and the "lost" alert

Revision ID: 0010
Revises: 0009

`progress` holds how far the send in flight got (an adapter's checkpoint, e.g. WeChat's draft and publish job),
so that a `find` after a crash resumes from it; it is cleared when the row's outcome is stored. `lost_at` is
when the channel took a live item down (deleted on the account, banned): the alerter announces those at once,
reading them from a partial index that holds those few rows only.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

LOST = "lost_at IS NOT NULL"  # publisher.store.schema.LOST_ROWS_SQL, verbatim


def upgrade() -> None:
    # Plain ALTER TABLE ADD COLUMN (no batch copy of the table: SQLite cannot copy into its generated lag_s column,
    # and a copy of a years-deep deliveries table would hold the store for minutes).
    op.add_column('deliveries', sa.Column('progress', sa.JSON(), nullable=True))
    op.add_column('deliveries', sa.Column('lost_at', sa.DateTime(timezone=True), nullable=True))
    op.create_index('ix_deliveries_lost', 'deliveries', ['channel', 'lost_at'], unique=False,
                    sqlite_where=sa.text(LOST), postgresql_where=sa.text(LOST))


def downgrade() -> None:
    op.drop_index('ix_deliveries_lost', table_name='deliveries')
    op.drop_column('deliveries', 'lost_at')
    op.drop_column('deliveries', 'progress')
