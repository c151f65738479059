"""Tier 3: what each domain does when a message dies, on the real worker, Telegram being the sandbox.

One worker for the module; each test drives one actor to exhaustion and reads what followed: the
dead letter, the worker's log, the messages the sandbox Telegram received.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import sqlalchemy as sa

from sandbox.server import RunningSandbox
from tests import e2e_actors
from tests.fixtures.worker import WorkerProcess, run_worker, wait_for
from worker_app.policies import exhaustion_action

pytestmark = pytest.mark.rabbitmq
TOKEN = "424242:test-only-secret-token"
ADMIN, CRITICAL, INITIATOR = 777000, 777001, 5550001
DASHBOARD = "http://dash.example:8080"
GRACE_S = 1.5
"""After the action ran: time for a (wrong) second alert to show up before the test says none came."""


@pytest.fixture(scope="module")
def worker(
    rabbitmq_vhost: str, migrated_database: str, sandbox_server: RunningSandbox, tmp_path_factory: Any
) -> Iterator[WorkerProcess]:
    env = {
        "TELEGRAM_API_URL": sandbox_server.url,
        "ADMIN_TELEGRAM_IDS": str(ADMIN),
        "CRITICAL_TELEGRAM_IDS": str(CRITICAL),
        "TELEGRAM_GLOBAL_RATE_PER_S": "0",
        "TELEGRAM_PER_CHAT_RATE_PER_S": "0",
        "DASHBOARD_URL": DASHBOARD,
    }
    with run_worker(tmp_path_factory.mktemp("exhaustion") / "worker.log", env) as running:
        yield running


@pytest.fixture
def e2e(
    worker: WorkerProcess, clean_tables: sa.Engine, redis_client: redis.Redis, sandbox: RunningSandbox
) -> sa.Engine:
    sandbox.state.add_token(TOKEN)
    return clean_tables


def received(sandbox: RunningSandbox, chat_id: int | None = None) -> list[dict[str, Any]]:
    return [e for e in sandbox.state.received() if chat_id is None or e["chat_id"] == chat_id]


def dead_letter(engine: sa.Engine, message_id: str) -> Any:
    with engine.connect() as conn:
        query = sa.text("SELECT * FROM dead_letters WHERE message_id = :m")
        return conn.execute(query, {"m": message_id}).first()


def die(engine: sa.Engine, worker: WorkerProcess, message_id: str) -> Any:
    """Wait until ``message_id`` is dead and its exhaustion action has run, then ``GRACE_S`` more
    (a second run, or an alert that should not come, shows up by then); its dead letter."""
    row = wait_for(lambda: dead_letter(engine, message_id), 30, f"dead letter of {message_id}")
    action = f"message {message_id}): exhaustion action"
    wait_for(lambda: action in worker.log(), 30, f"the exhaustion action of {message_id}")
    time.sleep(GRACE_S)
    assert worker.log().count(action) == 1, "the exhaustion action ran more than once"
    return row


@pytest.mark.parametrize("queue", ["subscriptions", "payments", "reports"])
def test_an_alerting_domain_sends_one_alert_naming_everything_needed(
    e2e: sa.Engine, worker: WorkerProcess, sandbox: RunningSandbox, queue: str
) -> None:
    # Given a domain whose dead letters alert the admins
    severity = {"subscriptions": "warning", "payments": "critical", "reports": "warning"}[queue]
    assert str(exhaustion_action(queue)) == f"alert({severity})"
    # When a message of it fails transiently until its retries run out
    message = e2e_actors.EXHAUSTING[queue].send_with_options(
        args=(f"run:{uuid.uuid4()}",), trace_id="trace-e2e-1"
    )
    row = die(e2e, worker, message.message_id)
    # Then the admins get exactly one alert, with the right severity and content
    [alert] = wait_for(lambda: received(sandbox, ADMIN), 30, "the admin alert")
    time.sleep(GRACE_S)
    assert len(received(sandbox, ADMIN)) == 1
    text = alert["text"]
    assert text.startswith(f"[{severity.upper()}] {queue}: e2e_exhaust_{queue} died (retries_exhausted)\n")
    assert f"UpstreamUnavailable: upstream answered 503 for {queue}" in text
    assert "attempts: 2 · first failure 20" in text and " · last 20" in text
    assert f"queue: {queue} · trace: trace-e2e-1 · dead letter #{row.id}" in text
    assert text.endswith(f"replay: {DASHBOARD}/dead-letters/{row.id}")
    # critical: also to CRITICAL_TELEGRAM_IDS, and with a sound; warning: silently
    assert alert["disable_notification"] is (severity == "warning")
    assert [e["text"] for e in received(sandbox, CRITICAL)] == ([text] if severity == "critical" else [])


def test_cleanup_logs_one_warning_and_pages_nobody(
    e2e: sa.Engine, worker: WorkerProcess, sandbox: RunningSandbox
) -> None:
    message = e2e_actors.EXHAUSTING["cleanup"].send(f"run:{uuid.uuid4()}")
    row = die(e2e, worker, message.message_id)
    assert received(sandbox) == []
    warning = "cleanup: e2e_exhaust_cleanup died (retries_exhausted) after 2 attempt(s)"
    [line] = [line for line in worker.log().splitlines() if warning in line]
    assert "WARNING" in line and f"replay: {DASHBOARD}/dead-letters/{row.id}" in line


@pytest.mark.parametrize("queue", ["monitoring", "analytics", "sync"])
def test_a_skipping_domain_leaves_the_dead_letter_and_one_warning(
    e2e: sa.Engine, worker: WorkerProcess, sandbox: RunningSandbox, queue: str
) -> None:
    message = e2e_actors.EXHAUSTING[queue].send(f"run:{uuid.uuid4()}")
    row = die(e2e, worker, message.message_id)
    assert (
        f"dead letter #{row.id} (e2e_exhaust_{queue}, message {message.message_id}): exhaustion action skip"
        in worker.log()
    )
    skipped = f"{queue}: e2e_exhaust_{queue} skipped after {row.attempts} attempt(s) (retries_exhausted)"
    [line] = [line for line in worker.log().splitlines() if skipped in line]
    assert "WARNING" in line and "the next scheduled run does the work" in line
    assert received(sandbox) == []
    assert row.reason == "retries_exhausted" and row.status == "dead"


def test_a_notification_that_dies_is_deferred_to_notification_queue(
    e2e: sa.Engine, worker: WorkerProcess, sandbox: RunningSandbox
) -> None:
    message = e2e_actors.EXHAUSTING["notifications"].send(f"run:{uuid.uuid4()}", 4242, "your key expires")

    def deferred() -> list[Any]:
        with e2e.connect() as conn:
            return list(conn.execute(sa.text("SELECT * FROM notification_queue")))

    die(e2e, worker, message.message_id)
    [row] = wait_for(deferred, 30, "the deferred notification_queue row")
    assert (row.telegram_id, row.message, row.status) == (4242, "your key expires", "pending")
    assert "UpstreamUnavailable" in row.error_message
    time.sleep(GRACE_S)
    assert received(sandbox) == [] and len(deferred()) == 1


def test_a_bulk_job_that_dies_is_reported_to_whoever_started_it(
    e2e: sa.Engine, worker: WorkerProcess, sandbox: RunningSandbox
) -> None:
    from worker_app.jobs import enqueue_job
    from worker_app.runtime import get_runtime

    actor = e2e_actors.EXHAUSTING["bulk"]
    message = enqueue_job(
        get_runtime().database, actor, (f"run:{uuid.uuid4()}",), initiated_by=str(INITIATOR)
    )
    row = die(e2e, worker, message.message_id)
    [report] = wait_for(lambda: received(sandbox, INITIATOR), 30, "the report to the initiator")
    assert report["text"].startswith(
        "[WARNING] Your job failed.\nbulk: e2e_exhaust_bulk died (retries_exhausted)"
    )
    assert f"dead letter #{row.id}" in report["text"]
    time.sleep(GRACE_S)
    assert received(sandbox, ADMIN) == []


def test_a_message_that_succeeds_on_its_last_retry_alerts_nobody(
    e2e: sa.Engine, worker: WorkerProcess, sandbox: RunningSandbox, redis_client: redis.Redis
) -> None:
    run_key = f"run:{uuid.uuid4()}"
    message = e2e_actors.e2e_fails_once.send(run_key)

    def succeeded() -> list[str]:
        return [
            line
            for line in worker.log().splitlines()
            if "[e2e_fails_once " in line and "message success" in line
        ]

    wait_for(succeeded, 30, "its success on the retry")
    time.sleep(GRACE_S)
    assert redis_client.get(run_key) == "2"
    assert dead_letter(e2e, message.message_id) is None
    assert received(sandbox) == []


def test_a_new_bug_alerts_at_its_first_failure_then_once_more_when_it_dies(
    e2e: sa.Engine, worker: WorkerProcess, sandbox: RunningSandbox
) -> None:
    # When an actor fails with an unexpected error (a bug) on each of its three attempts
    message = e2e_actors.e2e_new_bug.send(f"run:{uuid.uuid4()}")
    # Then the admins hear of it at its first failure, while the message still has retries left
    [first] = wait_for(lambda: received(sandbox, ADMIN), 30, "the first-occurrence alert")
    assert dead_letter(e2e, message.message_id) is None, "alerted only once the message was dead"
    assert first["text"].startswith("[ERROR] subscriptions: new error in e2e_new_bug (a bug?)\nKeyError: ")
    assert "will be retried (attempt 1 of 3)" in first["text"] and not first["disable_notification"]
    # And once more, under the domain's own action, when it dies; the retries in between are silent
    row = die(e2e, worker, message.message_id)
    wait_for(lambda: len(received(sandbox, ADMIN)) == 2, 30, "the dead-letter alert")
    time.sleep(GRACE_S)
    _first, dead = received(sandbox, ADMIN)
    assert dead["text"].startswith(
        "[WARNING] subscriptions: e2e_new_bug died (retries_exhausted)\nKeyError: "
    )
    assert row.attempts == 3
