"""delete_in_batches on the real PostgreSQL, by both walks (primary-key ranges and the cursor on the
column's index): due rows go in short batches, rows the backend holds are skipped (not waited for),
and a run stops cleanly — between batches, counting what it did — when its budget is spent, the
worker stops, a batch times out or another run is on."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import sqlalchemy as sa

from actors.cleanup.batches import Limits, Target, delete_in_batches
from actors.cleanup.walks import KeyRanges
from tests.cleanup.conftest import audit_logs, days_ago, ids
from worker_app.db import Database

JOB = "cleanup_test"
OLD = Target("deleted", "audit_logs", "created_at", days_ago(90)[0], key_type="bigint")


@pytest.fixture(params=["key ranges", "cursor"])
def old(request: pytest.FixtureRequest) -> Target:
    """Audit logs older than 90 days, walked either way."""
    return Target("deleted", "audit_logs", "created_at", OLD.before, key_type="bigint",
                  key_ranges=request.param == "key ranges")  # fmt: skip


def test_due_rows_go_in_batches_of_the_batch_size_and_the_others_stay(
    database: Database, clean_tables: sa.Engine, old: Target
) -> None:
    # Given 2,500 audit logs past retention (some at the same moment) and 300 inside it
    due = audit_logs(clean_tables, days_ago(*[91 + (n // 3) / 1000 for n in range(2500)]))
    young = audit_logs(clean_tables, days_ago(*[89.99 - n / 1000 for n in range(300)]))

    # When the rows are deleted in batches of 1,000
    deleted = delete_in_batches(database, JOB, [old], Limits(batch_size=1000))

    # Then every old row is gone, in three batches, and every young one is still there
    assert (deleted.counts, deleted.batches, deleted.stopped) == ({"deleted": 2500}, 3, None)
    assert 0 < deleted.longest_batch_s < 5
    assert ids(clean_tables, "audit_logs") == set(young)
    assert not set(due) & ids(clean_tables, "audit_logs")


def test_a_row_the_backend_holds_is_skipped_and_the_next_run_takes_it(
    database: Database, clean_tables: sa.Engine, old: Target
) -> None:
    # Given old rows, one of them locked by a backend transaction
    due = audit_logs(clean_tables, days_ago(*[100 + n for n in range(30)]))
    with clean_tables.connect() as backend:
        backend.execute(sa.text("SELECT 1 FROM audit_logs WHERE id = :id FOR UPDATE"), {"id": due[7]})

        # When a run deletes in batches of 10 (a key range waits for the row up to its lock timeout)
        deleted = delete_in_batches(database, JOB, [old], Limits(batch_size=10, lock_timeout_ms=300))

        # Then it deleted the others, and the held row is still there
        assert (deleted.counts, deleted.stopped) == ({"deleted": 29}, None)
        assert ids(clean_tables, "audit_logs") == {due[7]}
        backend.rollback()

    # And the next run takes it
    assert delete_in_batches(database, JOB, [old], Limits(batch_size=10)).counts == {"deleted": 1}
    assert ids(clean_tables, "audit_logs") == set()


def test_a_run_out_of_its_budget_stops_between_batches_and_the_next_run_continues(
    database: Database, clean_tables: sa.Engine, old: Target
) -> None:
    # Given 100 old rows and a clock that moves 1 s each time the budget is checked
    audit_logs(clean_tables, days_ago(*[95 + n / 100 for n in range(100)]))
    ticks = iter(range(1000))

    # When a run with a 3-second budget deletes batches of 10
    first = delete_in_batches(database, JOB, [old], Limits(batch_size=10, budget_s=3),
                              clock=lambda: float(next(ticks)))  # fmt: skip

    # Then it stopped after the batches its budget allowed, saying why
    assert (first.counts, first.batches, first.stopped) == ({"deleted": 20}, 2, "time budget")
    assert len(ids(clean_tables, "audit_logs")) == 80

    # And the next run, with time enough, deletes the rest
    second = delete_in_batches(database, JOB, [old], Limits(batch_size=10))
    assert (second.counts, second.stopped) == ({"deleted": 80}, None)


def test_a_stopping_worker_ends_the_run_at_the_next_batch(
    database: Database, clean_tables: sa.Engine, old: Target
) -> None:
    audit_logs(clean_tables, days_ago(*[95 + n / 100 for n in range(50)]))
    stop = threading.Event()

    def progress(_name: str, _rows: int) -> None:
        stop.set()  # the worker begins to shut down during the first batch

    deleted = delete_in_batches(database, JOB, [old], Limits(batch_size=10), stop=stop, progress=progress)

    assert (deleted.counts, deleted.stopped) == ({"deleted": 10}, "shutdown")


@pytest.mark.parametrize(
    "mode",
    [
        "SHARE",  # conflicts with DELETE, not with reading: the batch waits
        "ACCESS EXCLUSIVE",  # a migration's ALTER TABLE: even the walk's own min/max query waits
    ],
)
def test_a_run_that_waits_on_a_table_lock_gives_up_at_the_lock_timeout_and_deletes_nothing(
    database: Database, clean_tables: sa.Engine, old: Target, mode: str
) -> None:
    # Given old rows and a transaction holding a table lock
    due = audit_logs(clean_tables, days_ago(*[100 + n for n in range(5)]))
    with clean_tables.connect() as other:
        other.execute(sa.text(f"LOCK TABLE audit_logs IN {mode} MODE"))

        # When a run with a 200 ms lock timeout tries
        deleted = delete_in_batches(database, JOB, [old], Limits(lock_timeout_ms=200))
        other.rollback()

    # Then what it began was rolled back and the run stopped cleanly, saying why
    assert (deleted.counts, deleted.batches, deleted.stopped) == ({"deleted": 0}, 0, "timeout")
    assert ids(clean_tables, "audit_logs") == set(due)


def test_a_second_run_of_the_same_job_does_nothing_while_the_first_holds_its_lock(
    database: Database, clean_tables: sa.Engine, old: Target
) -> None:
    due = audit_logs(clean_tables, days_ago(100, 101))
    with clean_tables.connect() as first:
        first.execute(sa.text("SELECT pg_advisory_lock(hashtext(:n))"), {"n": f"cybervpn:cleanup:{JOB}"})
        deleted = delete_in_batches(database, JOB, [old], Limits())
        assert delete_in_batches(database, "another_job", [], Limits()).stopped is None
        first.rollback()

    assert (deleted.counts, deleted.stopped) == ({}, "another run in progress")
    assert ids(clean_tables, "audit_logs") == set(due)


def test_the_sessions_timeouts_and_lock_never_reach_the_pool(
    database: Database, clean_tables: sa.Engine, old: Target
) -> None:
    audit_logs(clean_tables, days_ago(100))
    delete_in_batches(database, JOB, [old], Limits(statement_timeout_ms=1234, lock_timeout_ms=567))

    def setting(name: str) -> Any:
        with database.transaction() as s:
            return s.execute(sa.text(f"SHOW {name}")).scalar_one()

    assert (setting("statement_timeout"), setting("lock_timeout")) == ("0", "0")
    with clean_tables.connect() as conn:
        held = conn.execute(sa.text(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )).scalar_one()  # fmt: skip
    assert held == 0


def test_targets_run_in_order_each_counted_under_its_name(
    database: Database, clean_tables: sa.Engine, old: Target
) -> None:
    audit_logs(clean_tables, days_ago(200, 201, 150))
    older = Target("older", "audit_logs", "created_at", days_ago(180)[0], key_type="bigint",
                   key_ranges=old.key_ranges)  # fmt: skip
    deleted = delete_in_batches(database, JOB, [older, old], Limits(batch_size=1))
    assert (deleted.counts, deleted.batches) == ({"older": 2, "deleted": 1}, 3)


def test_a_gap_of_keys_not_due_is_jumped_over_in_one_step(
    database: Database, clean_tables: sa.Engine
) -> None:
    # Given 5 due rows, 20,000 not due, then 5 due again (in key order)
    first = audit_logs(clean_tables, days_ago(*[100] * 5))
    audit_logs(clean_tables, days_ago(*[1] * 20_000))
    last = audit_logs(clean_tables, days_ago(*[100] * 5))
    ranges = Target("deleted", "audit_logs", "created_at", OLD.before, key_type="bigint", key_ranges=True)

    # When the key-range walk (ranges of 5) has found nothing to delete in a range
    with database.engine.connect() as conn:
        walk = KeyRanges(ranges, 5).start(conn)
        assert (walk.lo, walk.last_key) == (first[0], last[-1])
        walk.advance(conn, 5, None)
        walk.advance(conn, 0, None)

        # Then its next range starts at the next due key, not 5 keys on
        assert (walk.lo, walk.done) == (last[0], False)
        walk.advance(conn, 5, None)
        assert walk.done


def test_a_batch_limit_caps_the_rows_of_a_run_exactly_and_the_next_run_takes_the_rest(
    database: Database, clean_tables: sa.Engine, old: Target
) -> None:
    # Given 25 old rows and 5 young ones
    due = audit_logs(clean_tables, days_ago(*[95 + n / 100 for n in range(25)]))
    young = audit_logs(clean_tables, days_ago(*[10 + n for n in range(5)]))
    limits = Limits(batch_size=10, max_rows=13)  # CLEANUP_TEST_BATCH_LIMIT=13

    # When a run limited to 13 rows deletes batches of 10
    first = delete_in_batches(database, JOB, [old], limits)

    # Then it deleted exactly 13 (a full batch, then one cut to the 3 left), saying why it stopped
    assert (first.counts, first.batches, first.stopped) == ({"deleted": 13}, 2, "batch limit")
    assert len(ids(clean_tables, "audit_logs") & set(due)) == 12

    # And the next run takes the other 12 and ends with nothing due
    second = delete_in_batches(database, JOB, [old], limits)
    assert (second.counts, second.stopped) == ({"deleted": 12}, None)
    assert ids(clean_tables, "audit_logs") == set(young)
