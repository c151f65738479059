"""Cancelling notification jobs: a broadcast's pending rows are withdrawn (rows a drain holds are
left to it), no drain sends a cancelled broadcast's row, and the broadcast settles with its
cancelled rows counted; a deferred send's queued row is withdrawn. Real PostgreSQL and Redis, the
Telegram sandbox over HTTP, the actors on Dramatiq's StubBroker."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dramatiq
import sqlalchemy as sa
from dramatiq.brokers.stub import StubBroker

from actors.notifications import broadcast, broadcast_message, process_notification_queue
from actors.notifications.on_demand import defer_to_queue
from actors.notifications.slots import SLOTS_KEY
from sandbox.server import RunningSandbox
from tests.fixtures.notifications import rows
from worker_app import jobs as tracking
from worker_app.runtime import Runtime

QUEUE = "notifications"
CHATS = [1601, 1602, 1603, 1604, 1605]


def drain_stub(broker: StubBroker, worker: dramatiq.Worker) -> None:
    broker.join(QUEUE, fail_fast=False)
    worker.join()


@contextmanager
def drain_holding(engine: sa.Engine, chat_id: int) -> Iterator[sa.Connection]:
    """Another drain's transaction, holding the pending row of ``chat_id`` locked as a claim does."""
    with engine.connect() as conn, conn.begin():
        conn.execute(
            sa.text("SELECT id FROM notification_queue WHERE telegram_id = :chat FOR UPDATE"),
            {"chat": chat_id},
        )
        yield conn


def statuses(engine: sa.Engine) -> dict[int, tuple[str, str | None]]:
    return {r["telegram_id"]: (r["status"], r["error_message"]) for r in rows(engine)}


def queued_broadcast(runtime: Runtime, broker: StubBroker, worker: dramatiq.Worker, redis_client: Any) -> str:
    """A tracked broadcast to CHATS whose rows are queued but not sent (every drain slot taken)."""
    redis_client.zadd(SLOTS_KEY, {"other-1": 9e15, "other-2": 9e15})
    job_id = tracking.enqueue_job(
        runtime.database, broadcast_message, (CHATS, "Big sale", "promo"), initiated_by="admin:42"
    ).message_id
    drain_stub(broker, worker)
    redis_client.delete(SLOTS_KEY)
    return job_id


def test_cancelling_a_sending_broadcast_withdraws_its_pending_rows_and_leaves_the_one_in_flight(
    runtime: Runtime,
    stub_broker: StubBroker,
    stub_worker: dramatiq.Worker,
    sandbox: RunningSandbox,
    db_engine: sa.Engine,
    redis_client: Any,
) -> None:
    # Given a broadcast whose 5 rows are pending, one of them held by a drain sending it
    job_id = queued_broadcast(runtime, stub_broker, stub_worker, redis_client)
    with drain_holding(db_engine, 1601) as drain:
        # When an admin cancels it
        result = tracking.cancel_job(runtime.database, job_id, by="admin:7", redis_client=runtime.redis)
        # Then the 4 free rows are withdrawn; the held one is left; the broadcast is still settling
        assert (result.outcome, result.rows_cancelled, result.status) == ("broadcast_cancelled", 4, "sending")
        assert "4 pending row(s) cancelled" in result.detail
        assert statuses(db_engine) == {
            1601: ("pending", None),
            **{chat: ("failed", "cancelled by admin:7") for chat in CHATS[1:]},
        }
        job = tracking.get_job(runtime.database, job_id)
        assert job is not None and job.status == "sending" and job.cancel_requested_by == "admin:7"
        assert job.progress == {"processed": 4, "total": 5, "sent": 0, "failed": 0, "cancelled": 4}
        # When that drain's send succeeds and it commits
        drain.execute(sa.text("UPDATE notification_queue SET status = 'sent' WHERE telegram_id = 1601"))
    broadcast.refresh_progress(runtime.database, runtime.redis, [job_id])
    # Then the broadcast settles, the cancelled rows counted apart from the failed ones
    job = tracking.get_job(runtime.database, job_id)
    assert job is not None and job.status == "cancelled" and job.error == "cancelled by admin:7"
    assert {k: v for k, v in job.result.items() if k != "duration_seconds"} == {
        "broadcast_id": job_id, "sent": 1, "failed": 0, "cancelled": 4, "total": 5,
    }  # fmt: skip
    progress = broadcast.read_progress(redis_client, job_id)
    assert (progress["status"], progress["cancelled"], progress["failed"]) == ("settled", "4", "0")
    # And a drain sends nothing more
    process_notification_queue.send()
    drain_stub(stub_broker, stub_worker)
    assert sandbox.state.stats()["total"] == 0


def test_a_held_row_that_comes_back_pending_is_never_sent_and_is_withdrawn_by_the_next_refresh(
    runtime: Runtime,
    stub_broker: StubBroker,
    stub_worker: dramatiq.Worker,
    sandbox: RunningSandbox,
    db_engine: sa.Engine,
    redis_client: Any,
) -> None:
    # Given a cancelled broadcast whose row held by a drain at that moment comes back pending and due
    job_id = queued_broadcast(runtime, stub_broker, stub_worker, redis_client)
    with drain_holding(db_engine, 1601):
        tracking.cancel_job(runtime.database, job_id, by="cli:alice")
    # When the next drain runs
    process_notification_queue.send()
    drain_stub(stub_broker, stub_worker)
    # Then it did not send that row (a cancelled broadcast's rows are never claimed) and settled it
    assert sandbox.state.stats()["total"] == 0
    assert statuses(db_engine)[1601] == ("failed", "cancelled by cli:alice")
    job = tracking.get_job(runtime.database, job_id)
    assert job is not None and job.status == "cancelled" and job.result["cancelled"] == 5


def test_a_broadcast_without_a_job_row_can_be_cancelled_and_a_settled_one_cannot(
    runtime: Runtime, db_engine: sa.Engine, redis_client: Any
) -> None:
    # Given a broadcast created from Python (no jobs row)
    with runtime.database.transaction() as session:
        broadcast.create_broadcast(
            session, "bc-7", [1, 2, 3], message="hi", notification_type="t", parse_mode=None
        )
    # When it is cancelled, Then every row is withdrawn and it settles at once
    result = tracking.cancel_job(runtime.database, "bc-7", by="cli:alice", redis_client=runtime.redis)
    assert (result.outcome, result.status, result.rows_cancelled) == ("broadcast_cancelled", None, 3)
    assert "it has settled (0 sent, 0 failed, 3 cancelled)" in result.detail
    assert broadcast.unsettled(runtime.database) == []
    # And a second cancel finds it settled
    again = tracking.cancel_job(runtime.database, "bc-7", by="cli:alice", redis_client=runtime.redis)
    assert (again.outcome, again.rows_cancelled) == ("nothing_to_cancel", 0)


def test_a_broadcast_job_cancelled_while_its_rows_are_being_inserted_is_cancelled_when_they_commit(
    runtime: Runtime, stub_broker: StubBroker, db_engine: sa.Engine, redis_client: Any
) -> None:
    # Given a broadcast job running (its rows not committed yet) that an admin cancels
    job_id = tracking.enqueue_job(runtime.database, broadcast_message, ([1, 2], "hi", "news")).message_id
    with db_engine.begin() as conn:
        conn.execute(sa.text("UPDATE jobs SET status = 'running' WHERE job_id = :id"), {"id": job_id})
    result = tracking.cancel_job(runtime.database, job_id, by="admin:7", redis_client=runtime.redis)
    assert (result.outcome, result.status) == ("cancel_requested", "running")
    # When the actor commits its rows
    with runtime.database.transaction() as session:
        broadcast.create_broadcast(
            session, job_id, [1, 2], message="hi", notification_type="news", parse_mode=None
        )
    # Then the broadcast is cancelled with them, and the next refresh withdraws them and settles it
    broadcast.refresh_progress(runtime.database, runtime.redis, broadcast.unsettled(runtime.database))
    assert {status for status, _ in statuses(db_engine).values()} == {"failed"}
    job = tracking.get_job(runtime.database, job_id)
    assert job is not None and job.status == "cancelled" and job.result["cancelled"] == 2


def test_cancelling_a_deferred_send_withdraws_its_queued_row(
    runtime: Runtime, stub_broker: StubBroker, db_engine: sa.Engine
) -> None:
    # Given a tracked send that went to notification_queue (its job deferred)
    job_id = "deferred-1"
    notification_id = defer_to_queue(
        runtime.database, 1701, "renewed!", notification_type="payment", parse_mode=None, error="502"
    )
    with db_engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO jobs (job_id, actor_name, queue_name, status, result) "
                "VALUES (:id, 'send_notification', 'notifications', 'deferred', CAST(:result AS jsonb))"
            ),
            {"id": job_id, "result": f'{{"status": "queued", "notification_id": "{notification_id}"}}'},
        )
    # When it is cancelled, Then its row is withdrawn and the job is cancelled
    result = tracking.cancel_job(runtime.database, job_id, by="admin:7")
    assert (result.outcome, result.status, result.rows_cancelled) == ("cancelled", "cancelled", 1)
    assert statuses(db_engine) == {1701: ("failed", "cancelled by admin:7")}
    # And once its row is gone from pending there is nothing left to cancel
    again = tracking.cancel_job(runtime.database, job_id, by="admin:7")
    assert (again.outcome, again.status) == ("nothing_to_cancel", "cancelled")
