"""payments: index completed payments by paid_at, for aggregate_financial_stats

The payments table is the backend's; this adds an index and nothing else. It is built
``CONCURRENTLY`` (outside the migration's transaction), so a large table keeps taking writes.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 07:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_payments_completed_paid_at", "payments", ["paid_at"], unique=False,
            postgresql_where=sa.text("status = 'completed'"), postgresql_concurrently=True,
            if_not_exists=True,
        )  # fmt: skip


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index("ix_payments_completed_paid_at", table_name="payments", postgresql_concurrently=True,
                      if_exists=True)  # fmt: skip
