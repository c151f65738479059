"""Tier 2: the notifications actors through the real middleware on Dramatiq's StubBroker, with real
PostgreSQL and Redis, sending to the sandbox over HTTP."""

from __future__ import annotations

from typing import Any

import dramatiq
import pytest
import sqlalchemy as sa
from dramatiq.brokers.stub import StubBroker

from actors.notifications import broadcast, broadcast_message, process_notification_queue, send_notification
from actors.notifications.slots import SLOTS_KEY
from sandbox.server import RunningSandbox
from tests.fixtures.notifications import ADMIN_CHAT, MakeRuntime, insert_rows, rows
from tests.fixtures.stub import DelayCapturingStubBroker, run_until_idle
from worker_app.policies import MAX_RATE_LIMITED_RETRIES
from worker_app.runtime import Runtime

QUEUE = "notifications"


def drain_stub(broker: StubBroker, worker: dramatiq.Worker) -> None:
    broker.join(QUEUE, fail_fast=False)
    worker.join()


def admin_messages(sandbox: RunningSandbox) -> list[str]:
    return [str(e["text"]) for e in sandbox.state.received() if e["chat_id"] == ADMIN_CHAT]


def test_on_demand_send_returns_the_telegram_message_id(
    runtime: Runtime, stub_broker: StubBroker, stub_worker: dramatiq.Worker, sandbox: RunningSandbox
) -> None:
    message = send_notification.send(901, "<b>Your VPN expires tomorrow</b>", "expiry")
    drain_stub(stub_broker, stub_worker)
    result = message.get_result(block=True, timeout=5000)
    assert result["status"] == "sent" and result["message_id"] == 1 and result["sent_at"]
    assert sandbox.state.received()[0]["parse_mode"] == "HTML"


def test_on_demand_send_to_a_blocked_user_is_a_failed_result_not_a_retry(
    runtime: Runtime, stub_broker: StubBroker, stub_worker: dramatiq.Worker, sandbox: RunningSandbox
) -> None:
    sandbox.state.mark_chat(902, "blocked")
    message = send_notification.send(902, "hello", "expiry")
    drain_stub(stub_broker, stub_worker)
    result = message.get_result(block=True, timeout=5000)
    assert result["status"] == "failed" and "blocked" in result["error"]
    assert sandbox.state.stats()["total"] == 1


def test_on_demand_send_whose_retries_are_spent_goes_to_the_queue_instead_of_being_lost(
    runtime: Runtime,
    stub_broker: StubBroker,
    stub_worker: dramatiq.Worker,
    sandbox: RunningSandbox,
    db_engine: sa.Engine,
) -> None:
    # Given Telegram is down and this is the message's last attempt (3 retries already used)
    sandbox.state.set_faults(server_error_count=5, server_error_status=502)
    message = send_notification.send_with_options(args=(903, "renewed!", "payment"), retries=3)
    drain_stub(stub_broker, stub_worker)
    # Then the result says queued, and the row waits in notification_queue
    result = message.get_result(block=True, timeout=5000)
    assert result["status"] == "queued"
    [row] = rows(db_engine)
    assert str(row["id"]) == result["notification_id"]
    assert (row["telegram_id"], row["message"], row["status"], row["notification_type"]) == (
        903, "renewed!", "pending", "payment",
    )  # fmt: skip
    assert "502" in row["error_message"]


def open_breaker(runtime: Runtime) -> None:
    breaker = runtime.telegram_sender.breaker
    for _ in range(breaker.config.failures):
        breaker.record_failure("test: Telegram is down")


def test_on_demand_send_while_the_breaker_is_open_waits_for_it_without_spending_a_retry(
    runtime: Runtime, capturing_broker: DelayCapturingStubBroker, sandbox: RunningSandbox
) -> None:
    # Given Telegram is down and this process's breaker has opened
    open_breaker(runtime)
    # When a message is sent on demand
    send_notification.send(905, "your code is 1234", "login")
    run_until_idle(capturing_broker, QUEUE)
    # Then it is retried after the breaker's cooldown, as a deferral, not one of its 3 retries
    [(retry, delay_ms)] = capturing_broker.held
    assert 4000 < delay_ms <= 5000
    assert retry.options["rate_limited"] == 1 and "retries" not in retry.options
    assert sandbox.state.stats()["total"] == 0


def test_on_demand_send_out_of_deferrals_goes_to_the_queue_instead_of_the_dead_letters(
    runtime: Runtime,
    stub_broker: StubBroker,
    stub_worker: dramatiq.Worker,
    sandbox: RunningSandbox,
    db_engine: sa.Engine,
) -> None:
    # Given a long outage: the message has used up its deferrals
    open_breaker(runtime)
    message = send_notification.send_with_options(
        args=(906, "renewed!", "payment"), rate_limited=MAX_RATE_LIMITED_RETRIES
    )
    drain_stub(stub_broker, stub_worker)
    # Then it waits in notification_queue, where the queue consumer sends it when Telegram is back
    assert message.get_result(block=True, timeout=5000)["status"] == "queued"
    [row] = rows(db_engine)
    assert (row["telegram_id"], row["status"], row["attempts"]) == (906, "pending", 0)
    assert "circuit breaker open" in row["error_message"]


def test_text_over_the_limit_is_rejected_with_a_clear_error(
    runtime: Runtime,
    stub_broker: StubBroker,
    stub_worker: dramatiq.Worker,
    sandbox: RunningSandbox,
    db_engine: sa.Engine,
) -> None:
    send_notification.send(904, "z" * 5000, "expiry")
    drain_stub(stub_broker, stub_worker)
    with db_engine.connect() as conn:
        reason, text = conn.execute(sa.text("SELECT reason, exception_message FROM dead_letters")).one()
    assert reason == "bad_message"
    assert "5000 characters" in text and "4096" in text
    assert sandbox.state.stats()["total"] == 0


def test_drain_alerts_the_admins_once_per_incident(
    runtime: Runtime,
    stub_broker: StubBroker,
    stub_worker: dramatiq.Worker,
    sandbox: RunningSandbox,
    db_engine: sa.Engine,
) -> None:
    # Given rows on their last attempt and Telegram failing for user chats only
    sandbox.state.set_faults(server_error_count=1)
    insert_rows(db_engine, [1001], attempts="4")
    process_notification_queue.send()
    drain_stub(stub_broker, stub_worker)
    # Then the row is failed and the admins got one alert naming it
    assert rows(db_engine)[0]["status"] == "failed"
    assert runtime.alerts.flush(10)
    [alert] = admin_messages(sandbox)
    assert alert.startswith("[WARNING] 1 notification(s) failed after 5 attempts") and "1001" in alert
    # When the same incident repeats within the window, no second message is sent
    sandbox.state.set_faults(server_error_count=1)
    insert_rows(db_engine, [1002], attempts="4")
    process_notification_queue.send()
    drain_stub(stub_broker, stub_worker)
    assert runtime.alerts.flush(10)
    assert len(admin_messages(sandbox)) == 1


@pytest.fixture
def limited_runtime(make_runtime: MakeRuntime) -> Runtime:
    """The sandbox-backed runtime with PROCESS_NOTIFICATION_QUEUE_BATCH_LIMIT=3 (made before the stub
    broker, whose middleware it serves)."""
    return make_runtime(PROCESS_NOTIFICATION_QUEUE_BATCH_LIMIT="3")


def test_a_tick_stopped_by_its_batch_limit_leaves_the_rest_to_the_next_tick(
    limited_runtime: Runtime,
    stub_broker: StubBroker,
    stub_worker: dramatiq.Worker,
    sandbox: RunningSandbox,
    db_engine: sa.Engine,
) -> None:
    # Given five due rows and PROCESS_NOTIFICATION_QUEUE_BATCH_LIMIT=3
    insert_rows(db_engine, [1501, 1502, 1503, 1504, 1505])
    # When one tick runs
    process_notification_queue.send()
    drain_stub(stub_broker, stub_worker)
    # Then it sends three and does not carry on in a fresh message
    assert sorted(r["status"] for r in rows(db_engine)) == ["pending"] * 2 + ["sent"] * 3
    # And the next tick sends the other two: each row once
    process_notification_queue.send()
    drain_stub(stub_broker, stub_worker)
    assert sorted(e["chat_id"] for e in sandbox.state.received()) == [1501, 1502, 1503, 1504, 1505]


def test_a_tick_is_a_no_op_while_every_drainer_slot_is_taken(
    runtime: Runtime,
    stub_broker: StubBroker,
    stub_worker: dramatiq.Worker,
    sandbox: RunningSandbox,
    db_engine: sa.Engine,
    redis_client: Any,
) -> None:
    redis_client.zadd(SLOTS_KEY, {"other-1": 9e15, "other-2": 9e15})  # two live drains elsewhere
    insert_rows(db_engine, [1101])
    process_notification_queue.send()
    drain_stub(stub_broker, stub_worker)
    # the tick ran and returned without sending: the row is still pending
    assert sandbox.state.stats()["total"] == 0
    assert rows(db_engine)[0]["status"] == "pending"
    redis_client.delete(SLOTS_KEY)
    process_notification_queue.send()
    drain_stub(stub_broker, stub_worker)
    assert sandbox.state.stats()["total"] == 1


def test_broadcast_deduplicates_sends_and_reports_when_settled(
    runtime: Runtime,
    stub_broker: StubBroker,
    stub_worker: dramatiq.Worker,
    sandbox: RunningSandbox,
    db_engine: sa.Engine,
    redis_client: Any,
) -> None:
    sandbox.state.mark_chat(1203, "deactivated")
    # When a broadcast names a chat twice (once as a string)
    message = broadcast_message.send(
        [1201, 1202, 1201, "1203"], "<i>Maintenance at 02:00 UTC</i>", "maintenance"
    )
    drain_stub(stub_broker, stub_worker)
    created = message.get_result(block=True, timeout=5000)
    # Then three rows were queued and sent by the drain the broadcast started
    assert created["total"] == 3 and created["duplicates_removed"] == 1
    assert sorted(e["chat_id"] for e in sandbox.state.received()) == [1201, 1202, 1203]
    # And its progress hash holds the final report
    progress = broadcast.read_progress(redis_client, created["broadcast_id"])
    assert progress["status"] == "settled"
    assert (progress["total"], progress["sent"], progress["failed"], progress["pending"]) == (
        "3",
        "2",
        "1",
        "0",
    )
    assert float(progress["duration_seconds"]) >= 0
    with db_engine.connect() as conn:
        settled = conn.execute(sa.text("SELECT sent, failed, settled_at FROM notification_broadcasts")).one()
    assert settled[:2] == (2, 1) and settled[2] is not None


def test_a_redelivered_broadcast_inserts_nothing_twice(runtime: Runtime, db_engine: sa.Engine) -> None:
    with runtime.database.transaction() as session:
        first = broadcast.create_broadcast(
            session, "msg-1", [1, 2, 3], message="hi", notification_type="t", parse_mode=None
        )
    with runtime.database.transaction() as session:
        again = broadcast.create_broadcast(
            session, "msg-1", [1, 2, 3], message="hi", notification_type="t", parse_mode=None
        )
    assert first.created and not again.created and again.total == 3
    assert len(rows(db_engine)) == 3


def test_broadcast_with_a_bad_chat_id_is_rejected_naming_it(
    runtime: Runtime, stub_broker: StubBroker, stub_worker: dramatiq.Worker, db_engine: sa.Engine
) -> None:
    broadcast_message.send([1, "two", 3], "hi", "maintenance")
    drain_stub(stub_broker, stub_worker)
    with db_engine.connect() as conn:
        reason, text = conn.execute(sa.text("SELECT reason, exception_message FROM dead_letters")).one()
    assert reason == "bad_message" and "telegram_ids[1] = 'two'" in text
    assert rows(db_engine) == []


def test_on_demand_send_to_a_non_numeric_chat_is_rejected_naming_the_argument(
    runtime: Runtime, stub_broker: StubBroker, stub_worker: dramatiq.Worker, db_engine: sa.Engine
) -> None:
    send_notification.send("abc", "hi", "expiry")
    drain_stub(stub_broker, stub_worker)
    with db_engine.connect() as conn:
        reason, text = conn.execute(sa.text("SELECT reason, exception_message FROM dead_letters")).one()
    assert reason == "bad_message" and "telegram_id = 'abc': Input should be a valid integer" in text


def test_a_tick_while_postgresql_is_unreachable_is_skipped_not_dead(
    stub_broker: StubBroker,
    stub_worker: dramatiq.Worker,
    make_runtime: Any,
    db_engine: sa.Engine,
    redis_client: Any,
) -> None:
    """The next tick is the drain's retry: an outage must not leave a dead letter per tick."""
    make_runtime(DATABASE_URL="postgresql+psycopg://postgres@127.0.0.1:1/cybervpn_test?connect_timeout=1")
    process_notification_queue.send()
    drain_stub(stub_broker, stub_worker)
    with db_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM dead_letters")).scalar_one() == 0
    assert redis_client.zcard(SLOTS_KEY) == 0, "the drainer slot was released"
