"""The four PostgreSQL cleanup jobs, their actors called as the worker calls them (on the real
PostgreSQL), their summary, log line and metrics, ``worker-app cleanup <job> [--dry-run]`` and their
settings."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from actors.cleanup import (
    cleanup_audit_logs,
    cleanup_expired_tokens,
    cleanup_old_notifications,
    cleanup_webhook_logs,
)
from actors.cleanup.batches import Limits
from actors.cleanup.cli import cleanup
from actors.cleanup.finished_jobs import (
    SETTLED,
    cleanup_finished_jobs,
)
from actors.cleanup.metrics import deleted_total, longest_batch_seconds
from tests.cleanup.conftest import audit_logs, cleanup_settings, ids, notifications, tokens, webhook_logs
from worker_app.config import load_settings
from worker_app.db import Database
from worker_app.errors import ConfigurationError
from worker_app.runtime import Runtime, get_runtime, set_runtime

MakeRuntime = Callable[..., Runtime]


@pytest.fixture
def make_runtime(database: Database) -> Iterator[MakeRuntime]:
    """Install a runtime on the test database; keyword arguments override settings (by env name)."""
    previous = get_runtime()
    made: list[Runtime] = []

    def make(**overrides: Any) -> Runtime:
        runtime = Runtime(cleanup_settings(**overrides))
        made.append(runtime)
        set_runtime(runtime)
        return runtime

    yield make
    set_runtime(previous)
    for runtime in made:  # every one made, not only the last: their pools and Redis connections
        runtime.database.dispose()
        runtime.redis.close()


def now_minus(**delta: float) -> datetime:
    return datetime.now(UTC) - timedelta(**delta)


def test_expired_and_revoked_tokens_go_each_counted_once_and_valid_ones_stay(
    make_runtime: MakeRuntime, clean_tables: sa.Engine
) -> None:
    make_runtime()
    future, past = now_minus(days=-5), now_minus(days=1)
    expired, both, revoked, valid, revoked_later = tokens(clean_tables, [
        (past, None), (past, now_minus(days=2)), (future, now_minus(hours=1)), (future, None),
        (future, now_minus(days=-1)),
    ])  # fmt: skip

    summary = cleanup_expired_tokens()

    assert summary["counts"] == {"expired": 2, "revoked": 2}
    assert ids(clean_tables, "refresh_tokens") == {valid}
    assert not {expired, both, revoked, revoked_later} & ids(clean_tables, "refresh_tokens")


def test_the_job_s_batch_limit_caps_a_run_across_its_targets_and_the_next_run_takes_the_rest(
    make_runtime: MakeRuntime, clean_tables: sa.Engine
) -> None:
    make_runtime(CLEANUP_EXPIRED_TOKENS_BATCH_LIMIT=3)
    future, past = now_minus(days=-5), now_minus(days=1)
    *_due, valid = tokens(clean_tables, [
        (past, None), (past, None), (future, now_minus(hours=1)), (future, now_minus(hours=2)),
        (future, None),
    ])  # fmt: skip

    first = cleanup_expired_tokens()
    assert (first["counts"], first["stopped"]) == ({"expired": 2, "revoked": 1}, "batch limit")
    assert first["batch_limit"] == 3
    second = cleanup_expired_tokens()
    assert (second["counts"], second["stopped"]) == ({"expired": 0, "revoked": 1}, None)
    assert ids(clean_tables, "refresh_tokens") == {valid}


def test_webhook_logs_past_their_retention_go(make_runtime: MakeRuntime, clean_tables: sa.Engine) -> None:
    make_runtime(CLEANUP_WEBHOOK_RETENTION_DAYS=30)
    _old, young = webhook_logs(clean_tables, [now_minus(days=30, minutes=1), now_minus(days=29, hours=23)])

    assert cleanup_webhook_logs()["counts"] == {"deleted": 1}
    assert ids(clean_tables, "webhook_logs") == {young}


def test_settled_jobs_past_their_retention_go_never_one_still_under_way(
    make_runtime: MakeRuntime, clean_tables: sa.Engine
) -> None:
    make_runtime(CLEANUP_JOB_RETENTION_DAYS=30)
    old, young = now_minus(days=30, minutes=1), now_minus(days=29, hours=23)
    under_way = ("queued", "running", "sending", "deferred")
    rows = [(f"old-{status}", status, old) for status in (*SETTLED, *under_way)]
    rows.append(("young-succeeded", "succeeded", young))
    with clean_tables.begin() as conn:
        for job_id, status, created_at in rows:
            conn.execute(
                sa.text("INSERT INTO jobs (job_id, actor_name, queue_name, status, created_at) "
                        "VALUES (:id, 'generate_data_export', 'bulk', :status, :at)"),
                {"id": job_id, "status": status, "at": created_at},
            )  # fmt: skip

    assert cleanup_finished_jobs()["counts"] == {"deleted": 4}
    with clean_tables.connect() as conn:
        kept = set(conn.execute(sa.text("SELECT job_id FROM jobs")).scalars())
    assert kept == {"old-queued", "old-running", "old-sending", "old-deferred", "young-succeeded"}


def test_only_settled_notifications_past_retention_go_never_pending_nor_a_running_broadcasts(
    make_runtime: MakeRuntime, clean_tables: sa.Engine
) -> None:
    # Given notifications of every status on both sides of 7 days, and two broadcasts' rows
    make_runtime(CLEANUP_NOTIFICATION_RETENTION_DAYS=7)
    old, young = now_minus(days=7, minutes=1), now_minus(days=6, hours=23)
    pending_old, sent_old, failed_old, sent_young, failed_young, running, settled = notifications(
        clean_tables, [("pending", old), ("sent", old), ("failed", old), ("sent", young), ("failed", young),
                       ("sent", old), ("sent", old)],
    )  # fmt: skip
    with clean_tables.begin() as conn:
        conn.execute(sa.text("INSERT INTO notification_broadcasts (id, notification_type, total, settled_at) "
                             "VALUES ('running', 'b', 2, NULL), ('settled', 'b', 1, now())"))  # fmt: skip
        items = {"r": running, "s": settled}
        conn.execute(sa.text("INSERT INTO notification_broadcast_items (notification_id, broadcast_id) "
                             "VALUES (:r, 'running'), (:s, 'settled')"), items)  # fmt: skip

    # When the job runs
    summary = cleanup_old_notifications()

    # Then the old sent and failed rows went (the settled broadcast's with its item), nothing else
    assert summary["counts"] == {"deleted": 3}
    assert ids(clean_tables, "notification_queue") == {pending_old, sent_young, failed_young, running}
    with clean_tables.connect() as conn:
        items = set(conn.execute(sa.text("SELECT broadcast_id FROM notification_broadcast_items")).scalars())
    assert items == {"running"}
    assert not {sent_old, failed_old, settled} & ids(clean_tables, "notification_queue")


def test_a_run_returns_its_summary_logs_one_line_and_exports_its_metrics(
    make_runtime: MakeRuntime, clean_tables: sa.Engine, caplog: pytest.LogCaptureFixture
) -> None:
    make_runtime(CLEANUP_AUDIT_RETENTION_DAYS=90, CLEANUP_BATCH_SIZE=2)
    audit_logs(clean_tables, [now_minus(days=91), now_minus(days=92), now_minus(days=93), now_minus(days=1)])
    before = deleted_total().labels("cleanup_audit_logs")._value.get()

    with caplog.at_level(logging.INFO, logger="actors.cleanup"):
        summary = cleanup_audit_logs()

    assert {k: summary[k] for k in ("job", "counts", "batches", "stopped")} == {
        "job": "cleanup_audit_logs", "counts": {"deleted": 3}, "batches": 2, "stopped": None,
    }  # fmt: skip
    [line] = [r for r in caplog.records if r.getMessage().startswith("cleanup job done:")]
    assert line.getMessage() == "cleanup job done: cleanup_audit_logs {'deleted': 3}"
    assert line.counts == {"deleted": 3} and line.longest_batch_s == summary["longest_batch_s"]  # type: ignore[attr-defined]
    assert deleted_total().labels("cleanup_audit_logs")._value.get() == before + 3
    assert longest_batch_seconds().labels("cleanup_audit_logs")._value.get() == pytest.approx(
        summary["longest_batch_s"], abs=1e-4
    )
    assert cleanup_audit_logs.options["store_results"] and cleanup_audit_logs.queue_name == "cleanup"


def test_dry_run_shows_what_would_go_and_deletes_nothing_and_a_run_now_deletes_it(
    make_runtime: MakeRuntime, clean_tables: sa.Engine
) -> None:
    make_runtime()
    oldest, newest = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC), datetime(2025, 2, 3, 4, 5, 6, tzinfo=UTC)
    kept = audit_logs(clean_tables, [oldest, newest, now_minus(days=1)])[2:]

    dry = CliRunner().invoke(cleanup, ["cleanup_audit_logs", "--dry-run"])

    assert dry.exit_code == 0, dry.output
    lines = dry.output.splitlines()
    assert lines[0].split()[:3] == ["audit_logs", "deleted", "2"]
    assert lines[0].endswith("oldest 2025-01-02 03:04:05, newest 2025-02-03 04:05:06")
    assert lines[-1] == "cleanup_audit_logs: 2 row(s) would be deleted (dry run)"
    assert len(ids(clean_tables, "audit_logs")) == 3

    ran = CliRunner().invoke(cleanup, ["cleanup_audit_logs"])

    assert ran.exit_code == 0, ran.output
    assert ran.output.startswith("cleanup_audit_logs: deleted 2 in 1 batch(es), longest ")
    assert ids(clean_tables, "audit_logs") == set(kept)


def test_the_tokens_dry_run_counts_each_target(make_runtime: MakeRuntime, clean_tables: sa.Engine) -> None:
    make_runtime()
    tokens(clean_tables, [(now_minus(days=1), None), (now_minus(days=-1), now_minus(days=3))])
    dry = CliRunner().invoke(cleanup, ["cleanup_expired_tokens", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert [line.split()[:3] for line in dry.output.splitlines()[:2]] == [
        ["refresh_tokens", "expired", "1"], ["refresh_tokens", "revoked", "1"],
    ]  # fmt: skip
    assert len(ids(clean_tables, "refresh_tokens")) == 2


def test_the_stale_cache_job_is_reached_through_the_same_command(
    make_runtime: MakeRuntime, redis_client: Any
) -> None:
    make_runtime()
    dry = CliRunner().invoke(cleanup, ["cleanup_stale_cache", "--dry-run"])
    assert dry.exit_code == 0, dry.output


@pytest.mark.parametrize("value", ["csv:/var/archive", "jsonl:", "jsonl:relative/dir", "/var/archive"])
def test_a_bad_archive_setting_fails_start_up_in_one_line_naming_it(value: str) -> None:
    with pytest.raises(ConfigurationError) as failed:
        load_settings({"CLEANUP_AUDIT_ARCHIVE": value})
    assert str(failed.value).startswith(
        "invalid configuration: CLEANUP_AUDIT_ARCHIVE: expected jsonl:<absolute"
    )
    assert "\n" not in str(failed.value)


def test_good_cleanup_settings_load_and_a_statement_timeout_over_the_time_limit_does_not() -> None:
    s = load_settings({"CLEANUP_AUDIT_ARCHIVE": "jsonl:/var/lib/archive", "CLEANUP_BATCH_SIZE": "500"})
    assert (s.cleanup_audit_archive, s.cleanup_batch_size, s.cleanup_notification_retention_days) == (
        "jsonl:/var/lib/archive", 500, 7,
    )  # fmt: skip
    assert load_settings({"CLEANUP_AUDIT_ARCHIVE": ""}).cleanup_audit_archive is None
    with pytest.raises(
        ConfigurationError, match=r"CLEANUP_STATEMENT_TIMEOUT_MS \(60000\) must be below TIME_"
    ):
        load_settings({"CLEANUP_STATEMENT_TIMEOUT_MS": "60000", "TIME_LIMIT_MS": "60000"})
    capped = Limits.of(load_settings({"CLEANUP_TIME_BUDGET_S": "900", "TIME_LIMIT_MS": "600000"}))
    assert capped.budget_s == 595  # the time limit less a batch's statement timeout


def test_every_due_row_moment_is_a_utc_instant_of_now_minus_whole_days() -> None:
    from actors.cleanup.plan import JOBS

    now = datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    settings = load_settings({})
    bounds = {job: [t.before for t in make(settings, now)] for job, make in JOBS.items()}
    assert bounds == {
        "cleanup_old_notifications": [now - timedelta(hours=7 * 24)],
        "cleanup_expired_tokens": [now, None],
        "cleanup_audit_logs": [now - timedelta(hours=90 * 24)],
        "cleanup_webhook_logs": [now - timedelta(hours=30 * 24)],
        "cleanup_finished_jobs": [now - timedelta(hours=30 * 24)],
    }
