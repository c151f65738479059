"""Job tracking through the real middleware stack (StubBroker, real PostgreSQL)."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from dramatiq.brokers.stub import StubBroker

import tests.e2e_actors  # noqa: F401  (declares e2e_progress on the app broker, which the stub takes over)
from tests.fixtures.stub import run_until_idle
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

    from worker_app.cli_jobs import jobs

    job = run(stub_broker, progress_actor, 20)
    listed = CliRunner().invoke(jobs, ["list", "--status", "succeeded"])
    assert job.job_id in listed.output and "20/20" in listed.output
    shown = CliRunner().invoke(jobs, ["show", job.job_id])
    assert '"status": "succeeded"' in shown.output
    missing = CliRunner().invoke(jobs, ["show", "nope"])
    assert missing.exit_code == 1 and "no job with id nope" in missing.output
