"""notification_broadcasts.starts_at: when a scheduled broadcast starts sending (null: at once)

(Not ``scheduled_at``: the queue consumer's queries name ``notification_queue.scheduled_at`` unqualified
beside this table.)

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07 17:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "notification_broadcasts", sa.Column("starts_at", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("notification_broadcasts", "starts_at")
