"""dead letter reason 'adopted' (found in a .XQ queue without a record)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 06:15:00
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_BEFORE = (
    "'retries_exhausted', 'permanent_error', 'bad_message', 'undecodable', 'unknown_actor', 'age_limit', "
    "'redelivery_limit', 'retry_enqueue_failed', 'failed'"
)


def upgrade() -> None:
    op.drop_constraint(op.f("ck_dead_letters_reason"), "dead_letters", type_="check")
    op.create_check_constraint(
        op.f("ck_dead_letters_reason"), "dead_letters", f"reason IN ({_BEFORE}, 'adopted')"
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_dead_letters_reason"), "dead_letters", type_="check")
    op.create_check_constraint(op.f("ck_dead_letters_reason"), "dead_letters", f"reason IN ({_BEFORE})")
