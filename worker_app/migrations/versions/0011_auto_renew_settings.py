"""auto_renew_settings: who gets an invoice for which plan before their subscription ends

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 04:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "auto_renew_settings",
        sa.Column("user_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("telegram_id", sa.BigInteger(), nullable=True),
        sa.Column("plan_id", sa.Uuid(), nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default="true", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(
            ["plan_id"],
            ["subscription_plans.id"],
            name=op.f("fk_auto_renew_settings_plan_id_subscription_plans"),
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_auto_renew_settings")),
    )
    op.create_index(op.f("ix_auto_renew_settings_created_at"), "auto_renew_settings", ["created_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_auto_renew_settings_created_at"), table_name="auto_renew_settings")
    op.drop_table("auto_renew_settings")
