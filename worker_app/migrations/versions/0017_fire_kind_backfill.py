"""scheduler_fires.kind: also ``backfill`` (``worker-app schedules backfill``)

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07 17:30:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

_OLD = "kind IN ('scheduled', 'catch_up', 'immediate', 'manual')"
_NEW = "kind IN ('scheduled', 'catch_up', 'immediate', 'manual', 'backfill')"


def upgrade() -> None:
    op.drop_constraint(op.f("ck_scheduler_fires_kind"), "scheduler_fires", type_="check")
    op.create_check_constraint(op.f("ck_scheduler_fires_kind"), "scheduler_fires", _NEW)


def downgrade() -> None:
    op.execute("DELETE FROM scheduler_fires WHERE kind = 'backfill'")
    op.drop_constraint(op.f("ck_scheduler_fires_kind"), "scheduler_fires", type_="check")
    op.create_check_constraint(op.f("ck_scheduler_fires_kind"), "scheduler_fires", _OLD)
