"""cleanup: the indexes the cleanup jobs walk

Two partial indexes on backend tables, nothing else: revoked refresh tokens by ``revoked_at``
(``cleanup_expired_tokens``), and settled (``sent``/``failed``) notifications by ``created_at``
(``cleanup_old_notifications``, which never touches a pending row). The audit and webhook log jobs
walk the existing ``created_at`` indexes. Built ``CONCURRENTLY`` (outside the migration's
transaction), so the tables keep taking writes.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-08 07:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

INDEXES = (
    ("ix_refresh_tokens_revoked_at", "refresh_tokens", "revoked_at", "revoked_at IS NOT NULL"),
    (
        "ix_notification_queue_settled_created_at",
        "notification_queue",
        "created_at",
        "status IN ('sent', 'failed')",
    ),
)


def upgrade() -> None:
    with op.get_context().autocommit_block():
        for name, table, column, where in INDEXES:
            op.create_index(name, table, [column], unique=False, postgresql_where=sa.text(where),
                            postgresql_concurrently=True, if_not_exists=True)  # fmt: skip


def downgrade() -> None:
    with op.get_context().autocommit_block():
        for name, table, _column, _where in INDEXES:
            op.drop_index(name, table_name=table, postgresql_concurrently=True, if_exists=True)
