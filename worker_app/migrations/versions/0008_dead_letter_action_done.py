"""dead_letters.action_done_at: when the dead letter's exhaustion action ran

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 21:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("dead_letters", sa.Column("action_done_at", sa.DateTime(timezone=True), nullable=True))
    # rows recorded before exhaustion actions existed have nothing left to do
    op.execute("UPDATE dead_letters SET action_done_at = dead_at")


def downgrade() -> None:
    op.drop_column("dead_letters", "action_done_at")
