"""dashboard: the indexes its pages need with 100,000 dead letters and 1,000,000 jobs

Found with ``python -m bench.dashboard --explain`` (bench/README.md); each serves a page's query
that read the whole table without it:

* ``ix_dead_letters_status_queue_actor`` (status, queue_name, actor_name) — the Dead letters page's
  count (status, with the queue or actor filter) and the open dead letters per queue on the
  overview (``GROUP BY queue_name WHERE status = 'dead'``) become index-only scans of a 1 MB index
  instead of sequential scans of the ~200 MB heap (tracebacks are stored inline);
* ``ix_dead_letters_search`` — GIN trigram (``pg_trgm``) over the five texts the dead-letter search
  matches with ``ILIKE '%…%'`` (:func:`worker_app.dlq.search`: actor, exception type and message,
  ``args::text``, ``kwargs::text``); the error filter (type and message) uses it too. The
  expressions must stay exactly those of the query for the planner to use it;
* ``ix_jobs_error_search`` — GIN trigram over ``error``, for the Jobs page's search
  (:func:`worker_app.jobs.jobs_query`, which finds the id by the primary key and the actor by its
  index); most jobs have no error, so it is small and costs inserts little — a trigram index over
  the random job ids too was 168 MB at 1,000,000 jobs and made inserts ten times slower;
* ``ix_jobs_queue_created_at`` (queue_name, created_at) — the newest jobs of one queue (the Bulk
  page), which otherwise walks back through every other queue's jobs.

``pg_trgm`` ships with PostgreSQL's contrib (Debian's ``postgresql-15``, the official ``postgres``
images) and is a trusted extension since PostgreSQL 13: the database's owner, or any role with
CREATE on it, may create it — no superuser needed. Indexes are built ``CONCURRENTLY``, outside the
migration's transaction (as 0012 and 0013), so the tables keep taking writes; a build interrupted
half-way leaves an INVALID index behind, which ``IF NOT EXISTS`` alone would keep: such a leftover
is dropped and built again.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-08 09:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

#: (name, table, CREATE INDEX body after ``ON <table>``)
INDEXES = (
    ("ix_dead_letters_status_queue_actor", "dead_letters", "(status, queue_name, actor_name)"),
    (
        "ix_dead_letters_search",
        "dead_letters",
        "USING gin (actor_name gin_trgm_ops, exception_type gin_trgm_ops, exception_message gin_trgm_ops, "
        "(CAST(args AS text)) gin_trgm_ops, (CAST(kwargs AS text)) gin_trgm_ops)",
    ),
    ("ix_jobs_error_search", "jobs", "USING gin (error gin_trgm_ops)"),
    ("ix_jobs_queue_created_at", "jobs", "(queue_name, created_at)"),
)

_INVALID = sa.text(
    "SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
    "WHERE c.relname = :name AND c.relnamespace = current_schema()::regnamespace AND NOT i.indisvalid"
)


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        bind = op.get_bind()
        for name, table, body in INDEXES:
            if bind.execute(_INVALID, {"name": name}).first() is not None:
                op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
            op.execute(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {table} {body}")


def downgrade() -> None:
    with op.get_context().autocommit_block():
        for name, _table, _body in INDEXES:
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
    # pg_trgm stays: other objects (the backend's) may use it by now.
