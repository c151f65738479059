"""dead letter replay claims

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 06:02:53.811433
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("dead_letters", sa.Column("replay_started_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("dead_letters", sa.Column("replay_started_message_id", sa.String(length=64), nullable=True))
    op.add_column("dead_letters", sa.Column("discarded_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("dead_letters", "discarded_at")
    op.drop_column("dead_letters", "replay_started_message_id")
    op.drop_column("dead_letters", "replay_started_at")
