"""subscription_actions: the subscriptions domain's panel writes, recorded before and completed after

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 00:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "subscription_actions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("period", sa.String(64), nullable=False),
        sa.Column("telegram_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=True),
        sa.CheckConstraint("kind IN ('disable', 'traffic_reset')", name=op.f("ck_subscription_actions_kind")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscription_actions")),
    )
    op.create_index(
        "ix_subscription_actions_open",
        "subscription_actions",
        ["kind", "created_at"],
        postgresql_where=sa.text("done_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_subscription_actions_open", table_name="subscription_actions")
    op.drop_table("subscription_actions")
