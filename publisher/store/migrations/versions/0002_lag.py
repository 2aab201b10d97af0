"""lag report: indexes for the report, alert state

Revision ID: 0002
Revises: 0001
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


OPEN_ROWS = "state NOT IN ('live', 'superseded')"
IN_REVIEW = "state IN ('review', 'blocked')"


def upgrade() -> None:
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.create_index('ix_deliveries_open', ['channel', 'due_at', 'state', 'revision_id'], unique=False,
                              sqlite_where=sa.text(OPEN_ROWS), postgresql_where=sa.text(OPEN_ROWS))
        batch_op.create_index('ix_deliveries_lag', ['channel', 'due_at', 'state', 'live_at'], unique=False)
        batch_op.create_index('ix_deliveries_channel_live', ['channel', 'live_at'], unique=False)
    with op.batch_alter_table('revisions', schema=None) as batch_op:
        batch_op.create_index('ix_revisions_category', ['category', 'id'], unique=False)
        batch_op.create_index('ix_revisions_in_review', ['id'], unique=False,
                              sqlite_where=sa.text(IN_REVIEW), postgresql_where=sa.text(IN_REVIEW))
    op.create_table('alert_events',
    sa.Column('key', sa.String(length=400), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('channel', sa.String(length=64), nullable=True),
    sa.Column('item_id', sa.String(length=200), nullable=True),
    sa.Column('opened_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('notified_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('cleared_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('detail', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_alert_events'))
    )
    with op.batch_alter_table('alert_events', schema=None) as batch_op:
        batch_op.create_index('ix_alert_events_open', ['cleared_at', 'notified_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('alert_events', schema=None) as batch_op:
        batch_op.drop_index('ix_alert_events_open')
    op.drop_table('alert_events')
    with op.batch_alter_table('revisions', schema=None) as batch_op:
        batch_op.drop_index('ix_revisions_in_review')
        batch_op.drop_index('ix_revisions_category')
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_deliveries_channel_live')
        batch_op.drop_index('ix_deliveries_lag')
        batch_op.drop_index('ix_deliveries_open')
