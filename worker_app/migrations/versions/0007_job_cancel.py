"""job statuses deferred, sending, cancelled; job and broadcast cancellation

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24 09:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

OLD_STATUSES = "('queued', 'running', 'succeeded', 'failed', 'dead')"
NEW_STATUSES = "('queued', 'running', 'succeeded', 'failed', 'dead', 'deferred', 'sending', 'cancelled')"


def upgrade() -> None:
    op.drop_constraint(op.f("ck_jobs_status"), "jobs", type_="check")
    op.create_check_constraint(op.f("ck_jobs_status"), "jobs", f"status IN {NEW_STATUSES}")
    op.add_column("jobs", sa.Column("cancel_requested_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("jobs", sa.Column("cancel_requested_by", sa.String(length=128), nullable=True))
    op.add_column(
        "notification_broadcasts", sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column("notification_broadcasts", sa.Column("cancelled_by", sa.String(length=128), nullable=True))
    op.add_column(
        "notification_broadcasts", sa.Column("cancelled", sa.Integer(), server_default="0", nullable=False)
    )


def downgrade() -> None:
    op.drop_column("notification_broadcasts", "cancelled")
    op.drop_column("notification_broadcasts", "cancelled_by")
    op.drop_column("notification_broadcasts", "cancelled_at")
    op.drop_column("jobs", "cancel_requested_by")
    op.drop_column("jobs", "cancel_requested_at")
    # the old statuses' nearest meaning: handed over / sending were reported as succeeded
    op.execute("UPDATE jobs SET status = 'succeeded' WHERE status IN ('deferred', 'sending')")
    op.execute("UPDATE jobs SET status = 'failed' WHERE status = 'cancelled'")
    op.drop_constraint(op.f("ck_jobs_status"), "jobs", type_="check")
    op.create_check_constraint(op.f("ck_jobs_status"), "jobs", f"status IN {OLD_STATUSES}")
