"""idempotency_keys: the Idempotency-Key of each job-creating API request, for 24 h

One row per key (the primary key makes it unique), reserved before the job's message is published:
``scope`` (the endpoint's path) and ``body_hash`` identify the request, ``state`` is ``pending``
until the job is published, then ``done`` with its ``job_id``; ``owner`` is the reserving request's
random id (only it completes or releases the row). ``created_at`` is indexed for the expiry sweep.
See :mod:`worker_app.idempotency`.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-09 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "idempotency_keys",
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("scope", sa.String(128), nullable=False),
        sa.Column("body_hash", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), server_default="pending", nullable=False),
        sa.Column("job_id", sa.String(64), nullable=True),
        sa.Column("owner", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint("state IN ('pending', 'done')", name=op.f("ck_idempotency_keys_state")),
        sa.CheckConstraint(
            "(state = 'done') = (job_id IS NOT NULL)", name=op.f("ck_idempotency_keys_done_has_job")
        ),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_idempotency_keys")),
    )
    op.create_index(op.f("ix_idempotency_keys_created_at"), "idempotency_keys", ["created_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_idempotency_keys_created_at"), table_name="idempotency_keys")
    op.drop_table("idempotency_keys")
