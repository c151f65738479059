"""Tier 2: a tracked notification job shows what is really happening to its messages — a send
handed to ``notification_queue`` is ``deferred``, a broadcast is ``sending`` with its rows' progress
until it settles (StubBroker, real PostgreSQL and Redis, the Telegram sandbox over HTTP)."""

from __future__ import annotations

from typing import Any

import dramatiq
import sqlalchemy as sa
from dramatiq.brokers.stub import StubBroker

from actors.notifications import broadcast, broadcast_message, process_notification_queue, send_notification
from actors.notifications.slots import SLOTS_KEY
from sandbox.server import RunningSandbox
from tests.fixtures.notifications import rows
from tests.fixtures.stub import DelayCapturingStubBroker, run_until_idle
from worker_app import jobs as tracking
from worker_app.runtime import Runtime

QUEUE = "notifications"


def drain_stub(broker: StubBroker, worker: dramatiq.Worker) -> None:
    broker.join(QUEUE, fail_fast=False)
    worker.join()


def test_a_send_deferred_to_the_queue_after_its_retries_shows_deferred_with_its_notification_id(
    runtime: Runtime,
    capturing_broker: DelayCapturingStubBroker,
    sandbox: RunningSandbox,
    db_engine: sa.Engine,
) -> None:
    # Given Telegram answers 502 to every attempt of a tracked send
    sandbox.state.set_faults(server_error_count=10, server_error_status=502)
    job_id = tracking.enqueue_job(
        runtime.database, send_notification, (911, "renewed!", "payment")
    ).message_id
    # When it runs and each of its 3 retries is released at once instead of after its delay
    for _ in range(4):
        run_until_idle(capturing_broker, QUEUE)
        if capturing_broker.held:
            retry, _delay = capturing_broker.held.pop()
            capturing_broker.enqueue(retry)
    # Then the job says deferred, not succeeded, and its result names the queued row
    job = tracking.get_job(runtime.database, job_id)
    assert job is not None and job.status == "deferred" and job.finished_at
    [row] = rows(db_engine)
    assert job.result["status"] == "queued" and job.result["notification_id"] == str(row["id"])
    assert row["status"] == "pending"


def test_a_broadcast_job_is_sending_with_its_rows_progress_until_it_settles(
    runtime: Runtime,
    stub_broker: StubBroker,
    stub_worker: dramatiq.Worker,
    sandbox: RunningSandbox,
    db_engine: sa.Engine,
    redis_client: Any,
) -> None:
    # Given every drain slot taken (so no row is sent yet) and a tracked broadcast to 4 chats
    redis_client.zadd(SLOTS_KEY, {"other-1": 9e15, "other-2": 9e15})
    sandbox.state.mark_chat(1304, "blocked")
    job_id = tracking.enqueue_job(
        runtime.database, broadcast_message, ([1301, 1302, 1303, 1304], "Maintenance at 02:00", "maintenance")
    ).message_id
    drain_stub(stub_broker, stub_worker)
    # Then, its rows queued but none sent, the job is sending at 0 of 4 (not "succeeded")
    job = tracking.get_job(runtime.database, job_id)
    assert job is not None and job.status == "sending" and job.finished_at is None
    assert job.progress == {"processed": 0, "total": 4, "sent": 0, "failed": 0, "cancelled": 0}
    assert job.result["broadcast_id"] == job_id and job.result["total"] == 4
    # When one row is sent and the broadcast's progress is recounted
    with db_engine.begin() as conn:
        conn.execute(sa.text("UPDATE notification_queue SET status = 'sent' WHERE telegram_id = 1301"))
    broadcast.refresh_progress(runtime.database, runtime.redis, [job_id])
    job = tracking.get_job(runtime.database, job_id)
    assert job is not None and job.status == "sending"
    assert (job.progress["processed"], job.progress["total"], job.progress["sent"]) == (1, 4, 1)
    # When the drains run again and send the rest (one chat blocked the bot)
    redis_client.delete(SLOTS_KEY)
    process_notification_queue.send()
    drain_stub(stub_broker, stub_worker)
    # Then the job has succeeded with the broadcast's final report
    job = tracking.get_job(runtime.database, job_id)
    assert job is not None and job.status == "succeeded" and job.finished_at and job.error is None
    assert job.progress == {"processed": 4, "total": 4, "sent": 3, "failed": 1, "cancelled": 0}
    report = {k: v for k, v in job.result.items() if k != "duration_seconds"}
    assert report == {"broadcast_id": job_id, "sent": 3, "failed": 1, "cancelled": 0, "total": 4}


def test_a_broadcast_whose_every_row_failed_ends_its_job_failed(
    runtime: Runtime, stub_broker: StubBroker, stub_worker: dramatiq.Worker, sandbox: RunningSandbox
) -> None:
    for chat in (1401, 1402):
        sandbox.state.mark_chat(chat, "blocked")
    job_id = tracking.enqueue_job(
        runtime.database, broadcast_message, ([1401, 1402], "hi", "news")
    ).message_id
    drain_stub(stub_broker, stub_worker)
    job = tracking.get_job(runtime.database, job_id)
    assert job is not None and job.status == "failed"
    assert job.error == "no row could be sent (2 failed)"
    assert (job.result["sent"], job.result["failed"]) == (0, 2)


def test_a_redelivered_broadcast_message_leaves_its_settled_job_as_it_was(
    runtime: Runtime, stub_broker: StubBroker, stub_worker: dramatiq.Worker, sandbox: RunningSandbox
) -> None:
    # Given a tracked broadcast that has settled
    message = tracking.enqueue_job(runtime.database, broadcast_message, ([1501], "hi", "news"))
    drain_stub(stub_broker, stub_worker)
    settled = tracking.get_job(runtime.database, message.message_id)
    assert settled is not None and settled.status == "succeeded"
    # When its message is delivered again (at-least-once)
    stub_broker.enqueue(message)
    drain_stub(stub_broker, stub_worker)
    # Then nothing is sent twice and the job still holds the final report
    job = tracking.get_job(runtime.database, message.message_id)
    assert job is not None and job.status == "succeeded" and job.result == settled.result
    assert sandbox.state.stats()["total"] == 1
