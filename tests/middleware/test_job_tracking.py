"""Job tracking through the real middleware stack (StubBroker, real PostgreSQL)."""

from __future__ import annotations

from typing import Any

import dramatiq
import pytest
import sqlalchemy as sa
from dramatiq.brokers.stub import StubBroker

import tests.e2e_actors  # noqa: F401  (declares e2e_progress on the app broker, which the stub takes over)
from tests.fixtures.stub import DelayCapturingStubBroker, run_until_idle
from tests.fixtures.worker import wait_for
from worker_app import jobs as tracking
from worker_app.runtime import get_runtime


@pytest.fixture
def progress_actor(clean_tables: sa.Engine, stub_broker: StubBroker) -> Any:
    return stub_broker.get_actor("e2e_progress")


def run(stub_broker: StubBroker, actor: Any, *args: Any) -> Any:
    database = get_runtime().database
    job_id = tracking.enqueue_job(database, actor, args, initiated_by="admin:42").message_id
    queued = tracking.get_job(database, job_id)
    assert queued is not None and queued.status == "queued" and queued.initiated_by == "admin:42"
    run_until_idle(stub_broker, "bulk")
    job = tracking.get_job(database, job_id)
    assert job is not None
    return job


def test_a_job_runs_to_success_with_progress_and_result(stub_broker: StubBroker, progress_actor: Any) -> None:
    job = run(stub_broker, progress_actor, 95)
    assert job.status == "succeeded"
    assert job.progress == {"processed": 95, "total": 95, "failed": 0}
    assert job.result == {"status": "done", "processed": 95}
    assert job.attempts == 1 and job.started_at and job.finished_at and job.trace_id


def test_a_reported_failure_and_a_dead_job(stub_broker: StubBroker, progress_actor: Any) -> None:
    assert run(stub_broker, progress_actor, 10, "failed").status == "failed"
    dead = run(stub_broker, progress_actor, 10, "raise")
    assert dead.status == "dead"
    assert dead.error == "PermanentError: bulk operation refused"


def test_jobs_cli_lists_and_shows(stub_broker: StubBroker, progress_actor: Any) -> None:
    from click.testing import CliRunner

    from worker_app.cli.jobs import jobs

    job = run(stub_broker, progress_actor, 20)
    listed = CliRunner().invoke(jobs, ["list", "--status", "succeeded"])
    assert job.job_id in listed.output and "20/20" in listed.output
    shown = CliRunner().invoke(jobs, ["show", job.job_id])
    assert '"status": "succeeded"' in shown.output
    missing = CliRunner().invoke(jobs, ["show", "nope"])
    assert missing.exit_code == 1 and "no job with id nope" in missing.output


def test_a_job_cancelled_before_it_starts_is_acked_without_running(
    stub_broker: StubBroker, progress_actor: Any, clean_tables: sa.Engine
) -> None:
    # Given a queued job
    database = get_runtime().database
    job_id = tracking.enqueue_job(database, progress_actor, (30,)).message_id
    # When an operator cancels it before a worker takes it
    result = tracking.cancel_job(database, job_id, by="cli:alice")
    assert (result.outcome, result.status) == (tracking.CANCELLED, "cancelled")
    run_until_idle(stub_broker, "bulk")
    # Then its message was acked without running: no progress, no attempt, no retry, no dead letter
    job = tracking.get_job(database, job_id)
    assert job is not None and job.status == "cancelled"
    assert job.progress is None and job.attempts == 0 and job.started_at is None
    assert job.cancel_requested_by == "cli:alice" and job.cancel_requested_at and job.finished_at
    assert job.error == "cancelled by cli:alice before it started"
    assert stub_broker.dead_letters == []
    with clean_tables.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM dead_letters")).scalar_one() == 0
    # And cancelling it again finds nothing to cancel
    again = tracking.cancel_job(database, job_id, by="cli:bob")
    assert (again.outcome, again.status) == (tracking.NOTHING_TO_CANCEL, "cancelled")


def cancelled(database: Any, job_id: str) -> Any:
    job = tracking.get_job(database, job_id)
    return job if job is not None and job.status == "cancelled" else None


def test_a_running_job_cancelled_stops_at_its_next_progress_report_without_retry_or_dead_letter(
    capturing_broker: DelayCapturingStubBroker, clean_tables: sa.Engine
) -> None:
    # Given a long job running on a worker (2000 items, 20 ms per 10)
    database = get_runtime().database
    actor = capturing_broker.get_actor("e2e_progress")
    job_id = tracking.enqueue_job(database, actor, (2000, "ok", 0.02), initiated_by="admin:42").message_id
    worker = dramatiq.Worker(capturing_broker, worker_timeout=50, worker_threads=1)
    worker.start()
    try:
        wait_for(lambda: (j := tracking.get_job(database, job_id)) and j.progress, 10, "the first report")
        # When it is cancelled
        result = tracking.cancel_job(database, job_id, by="admin:7")
        assert (result.outcome, result.status) == (tracking.CANCEL_REQUESTED, "running")
        # Then it stops at its next report, part-way
        job = wait_for(lambda: cancelled(database, job_id), 10, "the job to be cancelled")
        capturing_broker.join("bulk", fail_fast=False)
        worker.join()
    finally:
        worker.stop()
    assert job.progress["processed"] < 2000 and job.result is None and job.finished_at
    assert job.error.startswith("cancelled by admin:7 at ")
    assert job.cancel_requested_by == "admin:7" and job.attempts == 1
    # And it is neither retried nor dead
    assert capturing_broker.held == [] and capturing_broker.dead_letters == []
    with clean_tables.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM dead_letters")).scalar_one() == 0


def test_a_job_that_finished_has_nothing_to_cancel_and_an_unknown_id_is_said_so(
    stub_broker: StubBroker, progress_actor: Any
) -> None:
    job = run(stub_broker, progress_actor, 10)
    result = tracking.cancel_job(get_runtime().database, job.job_id, by="cli:alice")
    assert (result.outcome, result.status) == (tracking.NOTHING_TO_CANCEL, "succeeded")
    assert "succeeded: nothing to cancel" in result.detail
    unknown = tracking.cancel_job(get_runtime().database, "no-such-job", by="cli:alice")
    assert unknown.as_dict() == {
        "job_id": "no-such-job", "outcome": "unknown", "status": None,
        "detail": "no job or broadcast with id no-such-job", "rows_cancelled": 0,
    }  # fmt: skip


def test_jobs_cancel_asks_first_and_a_no_or_end_of_input_aborts(
    stub_broker: StubBroker, progress_actor: Any
) -> None:
    from click.testing import CliRunner

    from worker_app.cli.jobs import jobs

    # Given a queued job
    database = get_runtime().database
    job_id = tracking.enqueue_job(database, progress_actor, (30,), initiated_by="admin:42").message_id
    # When the operator answers "n", or stdin ends, Then nothing is cancelled
    for answer in ("n\n", ""):
        refused = CliRunner().invoke(jobs, ["cancel", job_id], input=answer)
        assert refused.exit_code == 1 and "Aborted!" in refused.output
        assert f"Cancel job {job_id} (e2e_progress, queued, started by admin:42)?" in refused.output
        assert [j.status for j in tracking.list_jobs(database)] == ["queued"]
    # When confirmed, it is cancelled and who did it is recorded
    confirmed = CliRunner().invoke(jobs, ["cancel", job_id], input="y\n")
    assert confirmed.exit_code == 0, confirmed.output
    assert "had not started: cancelled" in confirmed.output
    job = tracking.get_job(database, job_id)
    assert job is not None and job.status == "cancelled" and job.cancel_requested_by == tracking.cli_user()
    # And --yes does not ask; there being nothing left to cancel exits 1
    again = CliRunner().invoke(jobs, ["cancel", job_id, "--yes", "--json"])
    assert again.exit_code == 1 and '"outcome": "nothing_to_cancel"' in again.output
    assert "Cancel job" not in again.output
    missing = CliRunner().invoke(jobs, ["cancel", "nope", "--yes"])
    assert missing.exit_code == 1 and "no job or broadcast with id nope" in missing.output
