"""Migration 0019: the dashboard's indexes exist after ``upgrade``, the pages' own queries can use them
(the expressions match), a build interrupted half-way is rebuilt, and ``downgrade`` removes them."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql.base import PGDialect
from sqlalchemy.engine import make_url

from tests.fixtures.services import recreate_database, require
from worker_app import migrate

INDEXES = {
    "ix_dead_letters_status_queue_actor": "dead_letters",
    "ix_dead_letters_search": "dead_letters",
    "ix_jobs_error_search": "jobs",
    "ix_jobs_queue_created_at": "jobs",
}


@pytest.fixture
def scratch_db() -> Iterator[sa.Engine]:
    """An empty database of its own (migrations are what is tested), dropped after; its engine."""
    require("PostgreSQL", "127.0.0.1", 5432)
    main = make_url(os.environ["DATABASE_URL"])
    url = main.set(database=f"{main.database}_indexes")
    recreate_database(url.render_as_string(hide_password=False))
    engine = sa.create_engine(url)
    yield engine
    engine.dispose()
    admin = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))
    admin.dispose()


def url_of(engine: sa.Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def valid_indexes(engine: sa.Engine) -> dict[str, tuple[str, bool]]:
    """Index name → (table, valid) for the indexes of 0019 that exist."""
    query = sa.text(
        "SELECT c.relname, t.relname, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "JOIN pg_class t ON t.oid = i.indrelid WHERE c.relname = ANY(:names)"
    )
    with engine.connect() as conn:
        return {name: (table, valid) for name, table, valid in conn.execute(query, {"names": list(INDEXES)})}


_DEAD_LETTERS = """
    INSERT INTO dead_letters (message_id, queue_name, actor_name, args, kwargs, reason, exception_type,
                              exception_message, first_failed_at, last_failed_at)
    SELECT 'm' || n, 'queue' || n % 5, 'actor' || n % 20, jsonb_build_array('chat ' || n), '{}', 'failed',
           'KeyError', 'no key ' || n, now(), now()
    FROM generate_series(1, 3000) AS n
"""
_JOBS = """
    INSERT INTO jobs (job_id, actor_name, queue_name, error, created_at)
    SELECT md5(n::text), 'actor' || n % 20, CASE WHEN n % 500 = 0 THEN 'bulk' ELSE 'notifications' END,
           'error ' || n, now() - n * interval '1 second'
    FROM generate_series(1, 5000) AS n
"""


def fill(engine: sa.Engine) -> None:
    """A few thousand dead letters and jobs (one job in 500 on ``bulk``), vacuumed and analysed, so
    that the planner weighs the indexes against real rows."""
    with engine.begin() as conn:
        conn.execute(sa.text(_DEAD_LETTERS))
        conn.execute(sa.text(_JOBS))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE dead_letters, jobs"))


def plan(engine: sa.Engine, statement: Any) -> str:
    """The plan PostgreSQL picks for ``statement``, a sequential scan as its last resort (so the test
    tells whether an index serves the query, whatever a few thousand rows would cost to scan)."""
    dialect = PGDialect()  # type: ignore[no-untyped-call]  # plain PostgreSQL: "%" stays "%" in literals
    compiled = statement.compile(dialect=dialect, compile_kwargs={"literal_binds": True})
    with engine.connect() as conn:
        conn.execute(sa.text("SET enable_seqscan = off"))
        return "\n".join(conn.execute(sa.text(f"EXPLAIN {compiled}")).scalars())


def test_upgrade_creates_the_indexes_and_the_pages_queries_can_use_them(scratch_db: sa.Engine) -> None:
    from models import Job
    from worker_app.dlq import DeadLetterFilter
    from worker_app.jobs import jobs_query

    # Given an empty database, When every migration is applied
    migrate.upgrade(url_of(scratch_db))
    fill(scratch_db)

    # Then pg_trgm is installed and every index exists, valid, on its table
    with scratch_db.connect() as conn:
        assert conn.execute(sa.text("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'")).first()
    assert valid_indexes(scratch_db) == {name: (table, True) for name, table in INDEXES.items()}

    # And the dead-letter search, its error filter and the jobs search match the trigram indexes'
    # expressions (a changed expression — a cast to varchar, say — would silently read every row)
    # (every status: on so few rows the status index would win the default filter)
    searched = DeadLetterFilter(q="user42@example.com", status="all").select()
    assert "ix_dead_letters_search" in plan(scratch_db, searched)
    assert "ix_dead_letters_search" in plan(
        scratch_db, DeadLetterFilter(error="timed out", status="all").select()
    )
    assert "ix_jobs_error_search" in plan(scratch_db, jobs_query(q="timed out"))
    # and a search naming an actor or a job id reads their own indexes, never the whole table
    by_all = plan(scratch_db, jobs_query(q="sync", actor_names=["sync_users", "send_notification"]))
    assert "ix_jobs_actor_name" in by_all and "pk_jobs" in by_all and "Seq Scan" not in by_all, by_all
    # And the open dead letters are counted from the index alone
    counted = sa.select(sa.func.count()).select_from(DeadLetterFilter(queue="payments").select().subquery())
    assert "Index Only Scan using ix_dead_letters_status_queue_actor" in plan(scratch_db, counted)
    newest_bulk = jobs_query(queue="bulk").order_by(Job.created_at.desc()).limit(100)
    assert "ix_jobs_queue_created_at" in plan(scratch_db, newest_bulk)


def test_an_interrupted_build_is_rebuilt_and_downgrade_removes_the_indexes(scratch_db: sa.Engine) -> None:
    url = url_of(scratch_db)
    # Given the schema before 0019, and an INVALID leftover of an interrupted concurrent build under
    # one of its names (a unique build over duplicates fails and leaves one)
    migrate.upgrade(url, "0018")
    with scratch_db.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("INSERT INTO jobs (job_id, actor_name, queue_name) VALUES ('a', 'x', 'bulk'), "
                             "('b', 'x', 'bulk')"))  # fmt: skip
        unique = "CREATE UNIQUE INDEX CONCURRENTLY ix_jobs_queue_created_at ON jobs (queue_name)"
        with pytest.raises(sa.exc.IntegrityError):
            conn.execute(sa.text(unique))
    assert valid_indexes(scratch_db)["ix_jobs_queue_created_at"] == ("jobs", False)

    # When 0019 is applied, Then the leftover is replaced by a valid index, not kept
    migrate.upgrade(url)
    assert valid_indexes(scratch_db) == {name: (table, True) for name, table in INDEXES.items()}

    # When downgraded to 0018, Then none is left; and upgrading again builds them all
    from alembic import command

    command.downgrade(migrate.alembic_config(url), "0018")
    assert valid_indexes(scratch_db) == {}
    migrate.upgrade(url)
    assert len(valid_indexes(scratch_db)) == len(INDEXES)
