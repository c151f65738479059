"""payment_activations: a paid payment's absolute new expiry, stored before the panel is told

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 04:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "payment_activations",
        sa.Column("payment_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("invoice_id", sa.String(64), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("days", sa.Integer(), nullable=True),
        sa.Column("base_expire_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("new_expire_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "state IN ('activating', 'completed', 'review')", name=op.f("ck_payment_activations_state")
        ),
        sa.ForeignKeyConstraint(
            ["payment_id"], ["payments.id"], name=op.f("fk_payment_activations_payment_id_payments")
        ),
        sa.PrimaryKeyConstraint("payment_id", name=op.f("pk_payment_activations")),
    )
    op.create_index(
        "ix_payment_activations_open",
        "payment_activations",
        ["created_at"],
        postgresql_where=sa.text("state <> 'completed'"),
    )


def downgrade() -> None:
    op.drop_index("ix_payment_activations_open", table_name="payment_activations")
    op.drop_table("payment_activations")
