"""Tier 1: the notification_queue consumer on real PostgreSQL and Redis, sending to the sandbox over
HTTP. These are the PRD's test scenarios for capability 1, plus the cases ARCHITECTURE.md adds."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from actors.notifications.queue import drainer
from sandbox.server import RunningSandbox
from tests.fixtures.notifications import MakeRuntime, insert_rows, rows
from tests.fixtures.worker import wait_for
from worker_app.runtime import Runtime


def sends(sandbox: RunningSandbox) -> list[dict[str, object]]:
    return sandbox.state.received()


def test_ten_pending_rows_are_sent_with_ten_telegram_calls(
    runtime: Runtime, sandbox: RunningSandbox, db_engine: sa.Engine
) -> None:
    # Given ten due rows
    insert_rows(db_engine, list(range(101, 111)))
    # When the queue is drained
    report = runtime.service(drainer).drain()
    # Then Telegram got ten sendMessage calls and every row is sent with its message id
    assert len(sends(sandbox)) == 10
    assert report.sent == 10 and report.stopped == "empty"
    for row in rows(db_engine):
        assert row["status"] == "sent"
        assert row["sent_at"] is not None and row["telegram_message_id"] == 1
        assert row["attempts"] == 0 and row["error_message"] is None


def test_empty_queue_is_a_clean_no_op(runtime: Runtime, sandbox: RunningSandbox) -> None:
    report = runtime.service(drainer).drain()
    assert report.summary() == {
        "batches": 0,
        "sent": 0,
        "retried": 0,
        "failed": 0,
        "deferred": 0,
        "stopped": "empty",
    }
    assert sandbox.state.stats()["total"] == 0


def test_rows_not_yet_scheduled_or_not_yet_due_are_left_alone(
    runtime: Runtime, sandbox: RunningSandbox, db_engine: sa.Engine
) -> None:
    insert_rows(db_engine, [1], scheduled_at="now() + interval '1 hour'")
    insert_rows(db_engine, [2], next_attempt_at="now() + interval '1 minute'", attempts="1")
    runtime.service(drainer).drain()
    assert sandbox.state.stats()["total"] == 0
    assert {r["status"] for r in rows(db_engine)} == {"pending"}


def test_a_429_pauses_sending_and_is_retried_without_counting_an_attempt(
    runtime: Runtime, sandbox: RunningSandbox, db_engine: sa.Engine
) -> None:
    # Given Telegram answers the first call with 429 retry_after=1
    sandbox.state.set_faults(rate_limit_count=1, rate_limit_retry_after=1)
    insert_rows(db_engine, [201, 202, 203])
    # When the queue is drained
    report = runtime.service(drainer).drain()
    # Then every row is sent in the end, none lost, and the 429 cost no attempt
    assert [r["status"] for r in rows(db_engine)] == ["sent"] * 3
    assert [r["attempts"] for r in rows(db_engine)] == [0, 0, 0]
    assert sandbox.state.stats()["by_status"]["429"] == 1
    assert report.deferred == 1 and report.sent == 3


def test_telegram_down_counts_an_attempt_and_keeps_the_error(
    runtime: Runtime, sandbox: RunningSandbox, db_engine: sa.Engine
) -> None:
    sandbox.state.set_faults(server_error_count=10, server_error_status=502)
    insert_rows(db_engine, [301])
    before = datetime.now(UTC)
    runtime.service(drainer).drain()
    [row] = rows(db_engine)
    assert row["status"] == "pending" and row["attempts"] == 1
    assert "502" in row["error_message"]
    # the next attempt is 30 s later (the first step of 30s, 1m, 5m, 15m, 1h)
    assert before + timedelta(seconds=29) < row["next_attempt_at"] < before + timedelta(seconds=40)


def test_the_fifth_failure_marks_the_row_failed_and_it_is_never_picked_again(
    runtime: Runtime, sandbox: RunningSandbox, db_engine: sa.Engine
) -> None:
    sandbox.state.set_faults(server_error_count=10, server_error_status=503)
    insert_rows(db_engine, [401], attempts="4")
    report = runtime.service(drainer).drain()
    [row] = rows(db_engine)
    assert row["status"] == "failed" and row["attempts"] == 5
    assert [r.telegram_id for r, _ in report.exhausted] == [401]
    # When the queue is drained again, even with its next attempt time in the past
    with db_engine.begin() as conn:
        conn.execute(sa.text("UPDATE notification_queue SET next_attempt_at = now() - interval '1 day'"))
    calls = sandbox.state.stats()["total"]
    runtime.service(drainer).drain()
    assert sandbox.state.stats()["total"] == calls


def test_a_row_locked_by_another_transaction_is_skipped_not_waited_on(
    runtime: Runtime, sandbox: RunningSandbox, db_engine: sa.Engine
) -> None:
    locked, free = insert_rows(db_engine, [501, 502])
    with db_engine.connect() as other:
        other.execute(sa.text("SELECT 1 FROM notification_queue WHERE id = :id FOR UPDATE"), {"id": locked})
        # a drain that waited on the lock would block here until the test timeout
        runtime.service(drainer).drain()
        other.rollback()
    status = {r["id"]: r["status"] for r in rows(db_engine)}
    assert status == {locked: "pending", free: "sent"}
    assert [e["chat_id"] for e in sends(sandbox)] == [502]


def test_a_blocked_chat_fails_at_once_with_a_readable_error_and_others_are_unaffected(
    runtime: Runtime, sandbox: RunningSandbox, db_engine: sa.Engine
) -> None:
    sandbox.state.mark_chat(601, "blocked")
    sandbox.state.mark_chat(602, "not_found")
    insert_rows(db_engine, [601, 602, 603])
    runtime.service(drainer).drain()
    by_chat = {r["telegram_id"]: r for r in rows(db_engine)}
    assert by_chat[601]["status"] == "failed" and by_chat[601]["attempts"] == 1
    assert "Forbidden: bot was blocked by the user" in by_chat[601]["error_message"]
    assert by_chat[602]["status"] == "failed" and "chat not found" in by_chat[602]["error_message"]
    assert by_chat[603]["status"] == "sent"
    assert sandbox.state.stats()["total"] == 3


def test_a_migrated_group_gets_the_message_in_its_new_chat(
    runtime: Runtime, sandbox: RunningSandbox, db_engine: sa.Engine
) -> None:
    sandbox.state.mark_chat(-4242, "migrated", migrate_to_chat_id=-1004242)
    insert_rows(db_engine, [-4242])
    runtime.service(drainer).drain()
    [row] = rows(db_engine)
    assert row["status"] == "sent"
    assert [e["chat_id"] for e in sends(sandbox) if e["status"] == 200] == [-1004242]


def test_text_telegram_would_refuse_fails_without_a_telegram_call(
    runtime: Runtime, sandbox: RunningSandbox, db_engine: sa.Engine
) -> None:
    insert_rows(db_engine, [701], text="x" * 4097)
    insert_rows(db_engine, [702], text="<b>" + "y" * 4096 + "</b>")  # 4096 visible characters: fine
    runtime.service(drainer).drain()
    by_chat = {r["telegram_id"]: r for r in rows(db_engine)}
    assert by_chat[701]["status"] == "failed"
    assert "4097 characters" in by_chat[701]["error_message"] and "4096" in by_chat[701]["error_message"]
    assert by_chat[702]["status"] == "sent"
    assert [e["chat_id"] for e in sends(sandbox)] == [702]


def test_a_wrong_bot_token_stops_the_drain_and_loses_nothing(
    make_runtime: MakeRuntime, sandbox: RunningSandbox, db_engine: sa.Engine
) -> None:
    runtime = make_runtime(TELEGRAM_BOT_TOKEN="999:not-a-known-token")
    insert_rows(db_engine, [801, 802])
    report = runtime.service(drainer).drain()
    assert report.stopped == "halt" and "401" in (report.halt_error or "")
    assert [(r["status"], r["attempts"]) for r in rows(db_engine)] == [("pending", 0), ("pending", 0)]


def test_a_drain_keeps_claiming_batches_until_nothing_is_due(
    make_runtime: MakeRuntime, sandbox: RunningSandbox, db_engine: sa.Engine
) -> None:
    runtime = make_runtime(NOTIFICATION_BATCH_SIZE=7)
    insert_rows(db_engine, list(range(1000, 1050)))
    report = runtime.service(drainer).drain()
    assert report.batches == 8 and report.sent == 50
    assert len({e["chat_id"] for e in sends(sandbox)}) == 50


def test_a_batch_limit_stops_the_drain_after_that_many_rows_and_the_next_drain_sends_the_rest(
    make_runtime: MakeRuntime, sandbox: RunningSandbox, db_engine: sa.Engine
) -> None:
    # Given five due rows, batches of two, and a limit of three rows a drain
    runtime = make_runtime(NOTIFICATION_BATCH_SIZE=2)
    insert_rows(db_engine, list(range(1400, 1405)))
    # When the queue is drained
    first = runtime.service(drainer).drain(limit=3)
    # Then it claims two rows, then one (none it would not send), and stops at its limit
    assert (first.batches, first.sent, first.stopped) == (2, 3, "batch limit")
    assert first.summary()["batch_limit"] == 3
    assert sorted(r["status"] for r in rows(db_engine)) == ["pending"] * 2 + ["sent"] * 3
    # And the next drain sends the other two: each row once
    second = runtime.service(drainer).drain(limit=3)
    assert (second.sent, second.stopped) == (2, "empty")
    assert sorted(e["chat_id"] for e in sends(sandbox)) == list(range(1400, 1405))


def test_a_lingering_drain_sends_rows_that_arrive_while_it_runs_and_stops_on_shutdown(
    make_runtime: MakeRuntime, sandbox: RunningSandbox, db_engine: sa.Engine
) -> None:
    # Given a drain that polls every 0.1 s for up to 20 s
    runtime = make_runtime(NOTIFICATION_POLL_INTERVAL_S="0.1", NOTIFICATION_DRAIN_BUDGET_S="20")
    reports = []
    drain = threading.Thread(target=lambda: reports.append(runtime.service(drainer).drain()))
    drain.start()
    # When a row arrives after it started
    insert_rows(db_engine, [1301])
    # Then the running drain sends it
    wait_for(lambda: sandbox.state.stats()["total"] == 1, 10, "the late row to be sent")
    # And when the worker begins to stop, the drain ends at the next safe point
    runtime.stopping.set()
    drain.join(timeout=10)
    assert reports[0].stopped == "shutdown" and reports[0].sent == 1
