"""scheduler fires and jobs

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 04:56:36.358845
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "scheduler_fires",
        sa.Column("job", sa.String(length=64), nullable=False),
        sa.Column("scheduled_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=16), server_default="scheduled", nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("message_id", sa.String(length=64), nullable=True),
        sa.Column("trace_id", sa.String(length=64), nullable=True),
        sa.Column("fired_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("fired_by", sa.String(length=128), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_message_id", sa.String(length=64), nullable=True),
        sa.Column("duplicates_dropped", sa.Integer(), server_default="0", nullable=False),
        sa.CheckConstraint(
            "kind IN ('scheduled', 'catch_up', 'immediate', 'manual')", name=op.f("ck_scheduler_fires_kind")
        ),
        sa.CheckConstraint(
            "status IN ('enqueued', 'skipped', 'started')", name=op.f("ck_scheduler_fires_status")
        ),
        sa.PrimaryKeyConstraint("job", "scheduled_at", name=op.f("pk_scheduler_fires")),
    )
    op.create_index(
        "ix_scheduler_fires_waiting",
        "scheduler_fires",
        ["job", "scheduled_at"],
        unique=False,
        postgresql_where=sa.text("status = 'enqueued'"),
    )
    op.create_table(
        "scheduler_jobs",
        sa.Column("job", sa.String(length=64), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("queue", sa.String(length=64), nullable=True),
        sa.Column("schedule", sa.String(length=128), nullable=False),
        sa.Column("jitter_s", sa.Integer(), server_default="0", nullable=False),
        sa.Column("grace_s", sa.Integer(), server_default="0", nullable=False),
        sa.Column("immediate", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("disabled_reason", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_by", sa.String(length=128), nullable=True),
        sa.PrimaryKeyConstraint("job", name=op.f("pk_scheduler_jobs")),
    )


def downgrade() -> None:
    op.drop_table("scheduler_jobs")
    op.drop_index(
        "ix_scheduler_fires_waiting",
        table_name="scheduler_fires",
        postgresql_where=sa.text("status = 'enqueued'"),
    )
    op.drop_table("scheduler_fires")
