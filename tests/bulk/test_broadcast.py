"""``execute_bulk_broadcast``: tier 1 (the plain function on real PostgreSQL and Redis, the Remnawave
sandbox over HTTP) and tier 2 (the actor on the real middleware through the StubBroker, drained by
the notifications domain's queue consumer into the Telegram sandbox)."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from typing import Any

import dramatiq
import pytest
import sqlalchemy as sa
from dramatiq.brokers.stub import StubBroker

from actors.bulk.broadcast import execute_bulk_broadcast, queue_bulk_broadcast
from actors.bulk.metrics import recipients_total
from actors.notifications import broadcast, broadcast_message
from sandbox.server import RunningSandbox
from tests.fixtures.notifications import ADMIN_CHAT, MakeRuntime, rows
from tests.fixtures.remnawave import Panel
from tests.fixtures.stub import DelayCapturingStubBroker, run_until_idle
from worker_app import jobs as tracking
from worker_app.clients.remnawave import RemnawaveClient, RemnawaveUnavailable, User
from worker_app.errors import BadMessage
from worker_app.logging_setup import JsonFormatter
from worker_app.runtime import Runtime

CAP = 3
"""BROADCAST_MAX_RECIPIENTS in these tests: every audience here but the empty one is larger."""
TEXT = "<b>Maintenance</b> at 02:00 UTC"


@pytest.fixture
def bulk_runtime(make_runtime: MakeRuntime, panel: Panel) -> Runtime:
    """The sandbox-backed runtime (Telegram and Remnawave), BROADCAST_MAX_RECIPIENTS at :data:`CAP`."""
    panel.admin("POST", "tokens", {"token": os.environ["REMNAWAVE_API_TOKEN"], "scopes": None})
    return make_runtime(REMNAWAVE_URL=panel.url, BROADCAST_MAX_RECIPIENTS=CAP)


def queue(runtime: Runtime, broadcast_id: str, telegram_ids: object, **text: Any) -> dict[str, Any]:
    """The plain function on the runtime's services, as the actor calls it."""
    given = {"message": TEXT, "notification_type": "maintenance", **text}
    return queue_bulk_broadcast(runtime.database, runtime.redis, runtime.remnawave, broadcast_id,
                                telegram_ids, **given)  # fmt: skip


def queued(engine: sa.Engine) -> list[tuple[int, str]]:
    """Every queued row's ``(telegram_id, broadcast_id)``, by telegram id."""
    query = sa.text(
        "SELECT n.telegram_id, i.broadcast_id FROM notification_queue AS n "
        "LEFT JOIN notification_broadcast_items AS i ON i.notification_id = n.id ORDER BY n.telegram_id"
    )
    with engine.connect() as conn:
        return [(int(r[0]), str(r[1])) for r in conn.execute(query)]


def broadcasts(engine: sa.Engine) -> list[str]:
    with engine.connect() as conn:
        return [str(r[0]) for r in conn.execute(sa.text("SELECT id FROM notification_broadcasts"))]


def dead_letters(engine: sa.Engine) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        query = sa.text("SELECT reason, exception_message FROM dead_letters")
        return [(str(r[0]), str(r[1])) for r in conn.execute(query)]


def stream_calls(panel: Panel) -> int:
    return len(panel.calls("/api/users/stream"))


def drain(broker: StubBroker, worker: dramatiq.Worker) -> None:
    """Run the bulk message, then the drain it started, to the end."""
    broker.join("bulk", fail_fast=False)
    broker.join("notifications", fail_fast=False)
    worker.join()


def panel_audience_of(count: int) -> tuple[list[dict[str, Any]], list[int]]:
    """``count`` panel users — every tenth without a telegram id, every hundredth sharing the previous
    user's — and the distinct chat ids a broadcast to them must reach."""
    chats: list[int | None] = []
    for i in range(count):
        if i % 10 == 3:
            chats.append(None)
        else:
            chats.append(7_000_000 + i - (1 if i % 100 == 50 else 0))
    users = [{"telegramId": c, "status": "DISABLED" if i % 7 == 0 else "ACTIVE"} for i, c in enumerate(chats)]
    return users, sorted({c for c in chats if c is not None})


# -- tier 1: the plain function --------------------------------------------------------------------


def test_an_explicit_list_with_duplicates_queues_each_chat_once(
    bulk_runtime: Runtime, clean_tables: sa.Engine, redis_client: Any, panel: Panel
) -> None:
    # When a bulk broadcast names one chat twice (once as a string) and more chats than the cap
    result = queue(bulk_runtime, "bulk-list-1", [501, 502, 501, "503", 504])
    # Then each chat has one row of the one broadcast, and its progress starts at 4 pending
    assert queued(clean_tables) == [(501, "bulk-list-1"), (502, "bulk-list-1"), (503, "bulk-list-1"),
                                    (504, "bulk-list-1")]  # fmt: skip
    assert (result["total"], result["duplicates_removed"], result["audience"]) == (4, 1, "list")
    progress = broadcast.read_progress(redis_client, "bulk-list-1")
    assert (progress["total"], progress["pending"], progress["status"]) == ("4", "4", "sending")
    assert {(r["message"], r["parse_mode"], r["notification_type"]) for r in rows(clean_tables)} == {
        (TEXT, "HTML", "maintenance")
    }
    assert stream_calls(panel) == 0


def test_all_reads_every_page_and_queues_each_telegram_id_once(
    bulk_runtime: Runtime, clean_tables: sa.Engine, panel: Panel, caplog: pytest.LogCaptureFixture
) -> None:
    # Given 2,500 panel users (3 stream pages): 250 without a telegram id, 25 sharing another's
    users, expected = panel_audience_of(2500)
    panel.add_users(*users)
    outcomes = ("queued", "duplicate", "without_telegram_id")
    before = {o: recipients_total().labels("all", o)._value.get() for o in outcomes}
    # When a bulk broadcast goes to "all"
    with caplog.at_level(logging.INFO, logger="actors.bulk"):
        result = queue(bulk_runtime, "bulk-all-1", "all")
    # Then every distinct telegram id has exactly one row, all of one broadcast, read page by page
    found = queued(clean_tables)
    assert [chat for chat, _ in found] == expected and len(expected) == 2500 - 250 - 25
    assert {b for _, b in found} == {"bulk-all-1"} and broadcasts(clean_tables) == ["bulk-all-1"]
    assert stream_calls(panel) == 3
    assert (result["total"], result["duplicates_removed"], result["without_telegram_id"]) == (2225, 25, 250)
    # And the run's counts are in its JSON log line and in the metric
    counts = {"queued": 2225, "duplicate": 25, "without_telegram_id": 250}
    [line] = [r for r in caplog.records if r.name == "actors.bulk"]
    logged = json.loads(JsonFormatter().format(line))
    assert logged["counts"] == counts and logged["audience"] == "all"
    assert logged["logger"] == "actors.bulk" and logged["broadcast_id"] == "bulk-all-1"
    for outcome, n in counts.items():
        assert recipients_total().labels("all", outcome)._value.get() == before[outcome] + n


def test_a_redelivered_bulk_broadcast_inserts_nothing_twice_and_reads_no_audience_again(
    bulk_runtime: Runtime, clean_tables: sa.Engine, panel: Panel
) -> None:
    # Given a bulk broadcast to "all" that has queued its rows
    panel.add_users(*[{"telegramId": 8000 + i} for i in range(5)])
    first = queue(bulk_runtime, "bulk-again-1", "all")
    calls = stream_calls(panel)
    # When its message is delivered again (at-least-once), after another user joined the panel
    panel.add_users({"telegramId": 8100})
    again = queue(bulk_runtime, "bulk-again-1", "all")
    # Then nothing more is queued and the panel is not read again
    assert len(queued(clean_tables)) == 5 and again["total"] == first["total"] == 5
    assert again["broadcast_id"] == "bulk-again-1" and stream_calls(panel) == calls


def test_the_panel_failing_part_way_queues_nothing_and_says_so(
    bulk_runtime: Runtime, clean_tables: sa.Engine, panel: Panel
) -> None:
    # Given a panel of two stream pages that goes down after answering the first
    panel.add_users(*[{"telegramId": 9000 + i} for i in range(4)])

    class FailingAfterOnePage(RemnawaveClient):
        def user_pages(self, *, page_size: int | None = None, **filters: Any) -> Iterator[list[User]]:
            pages = super().user_pages(page_size=page_size, **filters)
            yield next(pages)
            panel.faults(down=True)
            yield from pages

    client = FailingAfterOnePage(panel.url, os.environ["REMNAWAVE_API_TOKEN"], timeout_s=5, page_size=2)
    # When a bulk broadcast to "all" reads it
    with pytest.raises(RemnawaveUnavailable) as failure:
        queue_bulk_broadcast(bulk_runtime.database, bulk_runtime.redis, client, "bulk-down-1", "all",
                             message=TEXT, notification_type="maintenance")  # fmt: skip
    client.close()
    # Then it fails naming the cause and that nothing was queued; and nothing was
    assert 'telegram_ids "all"' in str(failure.value) and "nothing was queued" in str(failure.value)
    assert stream_calls(panel) == 2
    assert queued(clean_tables) == [] and broadcasts(clean_tables) == []


def test_an_audience_of_nobody_completes_at_once_without_a_broadcast(
    bulk_runtime: Runtime, clean_tables: sa.Engine, panel: Panel
) -> None:
    panel.add_users({"telegramId": None}, {"telegramId": None})
    result = queue(bulk_runtime, "bulk-empty-1", "all")
    assert result == {"broadcast_id": None, "sent": 0, "failed": 0, "cancelled": 0, "total": 0,
                      "duration_seconds": 0}  # fmt: skip
    assert queued(clean_tables) == [] and broadcasts(clean_tables) == []
    assert broadcast.unsettled(bulk_runtime.database) == []


@pytest.mark.parametrize(
    ("telegram_ids", "text", "error"),
    [
        ("all", {"message": "<b> </b>"}, "message is empty"),
        ("all", {"message": "x" * 4097}, "message is 4097 characters"),
        ("all", {"parse_mode": "bbcode"}, "parse_mode 'bbcode' is not one of"),
        ("all", {"notification_type": "  "}, "notification_type must be 1-64 characters"),
        ("everyone", {}, 'telegram_ids must be "all" or a list of chat ids'),
        ([1, "two"], {}, "telegram_ids[1] = 'two' is not an integer chat id"),
        ([], {}, "telegram_ids is empty"),
    ],
)
def test_bad_input_is_rejected_naming_it_before_the_panel_is_asked(
    bulk_runtime: Runtime,
    clean_tables: sa.Engine,
    panel: Panel,
    telegram_ids: object,
    text: dict[str, Any],
    error: str,
) -> None:
    panel.add_users({"telegramId": 1})
    with pytest.raises(BadMessage) as rejected:
        queue(bulk_runtime, "bulk-bad-1", telegram_ids, **text)
    assert error in str(rejected.value)
    assert queued(clean_tables) == [] and stream_calls(panel) == 0


# -- tier 2: the actor on the real middleware --------------------------------------------------------


def test_a_tracked_bulk_broadcast_to_all_ends_with_the_final_report_once_drained(
    bulk_runtime: Runtime,
    stub_broker: StubBroker,
    stub_worker: dramatiq.Worker,
    sandbox: RunningSandbox,
    panel: Panel,
) -> None:
    # Given six panel users with a telegram id (two of whom blocked the bot) and one without
    panel.add_users(*[{"telegramId": 3101 + i} for i in range(6)], {"telegramId": None})
    for chat in (3104, 3105):
        sandbox.state.mark_chat(chat, "blocked")
    # When an admin starts a bulk broadcast to "all" (more than BROADCAST_MAX_RECIPIENTS) and it drains
    job_id = tracking.enqueue_job(
        bulk_runtime.database, execute_bulk_broadcast, ("all", TEXT, "maintenance"), initiated_by="admin:42"
    ).message_id
    drain(stub_broker, stub_worker)
    # Then every chat got one try and the job succeeded with the broadcast's final report
    assert sorted(e["chat_id"] for e in sandbox.state.received()) == list(range(3101, 3107))
    job = tracking.get_job(bulk_runtime.database, job_id)
    assert job is not None and job.status == "succeeded" and job.error is None
    report = dict(job.result)
    assert report.pop("duration_seconds") >= 0
    assert report == {"broadcast_id": job_id, "sent": 4, "failed": 2, "cancelled": 0, "total": 6}


def test_a_redelivered_bulk_broadcast_message_sends_nothing_twice(
    bulk_runtime: Runtime,
    stub_broker: StubBroker,
    stub_worker: dramatiq.Worker,
    sandbox: RunningSandbox,
    panel: Panel,
    clean_tables: sa.Engine,
) -> None:
    # Given a tracked bulk broadcast that has been sent
    panel.add_users(*[{"telegramId": 3201 + i} for i in range(4)])
    message = tracking.enqueue_job(bulk_runtime.database, execute_bulk_broadcast, ("all", "hi", "news"))
    drain(stub_broker, stub_worker)
    settled = tracking.get_job(bulk_runtime.database, message.message_id)
    assert settled is not None and settled.status == "succeeded"
    # When its message is delivered again
    stub_broker.enqueue(message)
    drain(stub_broker, stub_worker)
    # Then no row is inserted or sent twice, and the job keeps its final report
    assert len(queued(clean_tables)) == 4 and sandbox.state.stats()["total"] == 4
    job = tracking.get_job(bulk_runtime.database, message.message_id)
    assert job is not None and job.status == "succeeded" and job.result == settled.result


def test_a_list_above_broadcast_max_recipients_is_accepted_in_bulk(
    bulk_runtime: Runtime,
    stub_broker: StubBroker,
    stub_worker: dramatiq.Worker,
    sandbox: RunningSandbox,
    clean_tables: sa.Engine,
) -> None:
    chats = [3301, 3302, 3303, 3304, 3305]
    # Given broadcast_message refuses these five chats (more than BROADCAST_MAX_RECIPIENTS = 3)
    broadcast_message.send(chats, "hi", "news")
    drain(stub_broker, stub_worker)
    [(reason, error)] = dead_letters(clean_tables)
    assert reason == "bad_message" and "more than BROADCAST_MAX_RECIPIENTS (3)" in error
    # When they are sent as a bulk broadcast
    message = execute_bulk_broadcast.send(chats, "hi", "news")
    drain(stub_broker, stub_worker)
    # Then it is accepted and every chat gets the message
    assert message.get_result(block=True, timeout=5000)["total"] == 5
    assert sorted(e["chat_id"] for e in sandbox.state.received() if e["chat_id"] != ADMIN_CHAT) == chats
    assert len(dead_letters(clean_tables)) == 1


def test_a_tracked_bulk_broadcast_to_nobody_succeeds_at_once_with_an_empty_report(
    bulk_runtime: Runtime,
    stub_broker: StubBroker,
    stub_worker: dramatiq.Worker,
    panel: Panel,
    clean_tables: sa.Engine,
) -> None:
    panel.add_users({"telegramId": None})
    job_id = tracking.enqueue_job(
        bulk_runtime.database, execute_bulk_broadcast, ("all", "hi", "news")
    ).message_id
    drain(stub_broker, stub_worker)
    job = tracking.get_job(bulk_runtime.database, job_id)
    assert job is not None and job.status == "succeeded" and job.finished_at is not None
    assert job.result == {"broadcast_id": None, "sent": 0, "failed": 0, "cancelled": 0, "total": 0,
                          "duration_seconds": 0}  # fmt: skip
    assert broadcasts(clean_tables) == [] and dead_letters(clean_tables) == []


def test_the_panel_down_fails_the_job_at_once_with_a_clear_error_and_nothing_queued(
    bulk_runtime: Runtime, capturing_broker: DelayCapturingStubBroker, panel: Panel, clean_tables: sa.Engine
) -> None:
    # Given a panel that closes every connection unanswered
    panel.add_users({"telegramId": 3401})
    panel.faults(down=True)
    # When a tracked bulk broadcast to "all" runs
    job_id = tracking.enqueue_job(
        bulk_runtime.database, execute_bulk_broadcast, ("all", "hi", "news")
    ).message_id
    run_until_idle(capturing_broker, "bulk")
    # Then it is not retried: the job is dead with an error saying nothing was queued, and nothing was
    assert capturing_broker.held == []
    job = tracking.get_job(bulk_runtime.database, job_id)
    assert job is not None and job.status == "dead"
    assert job.error is not None and job.error.startswith("RemnawaveUnavailable: ")
    assert "could not be read from the Remnawave panel, so nothing was queued" in job.error
    [(reason, _)] = dead_letters(clean_tables)
    assert reason == "retries_exhausted"
    assert queued(clean_tables) == [] and broadcasts(clean_tables) == []


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (("everyone", "hi", "news"), "telegram_ids = 'everyone': Input should be \"all\" or a list of chat"),
        (([1, "two"], "hi", "news"), "telegram_ids.ids[1] = 'two'"),
        (([], "hi", "news"), "telegram_ids.ids = []: List should have at least 1 item"),
        (("all", "", "news"), "message = '': String should have at least 1 character"),
        (("all", "<i></i>", "news"), "execute_bulk_broadcast: message is empty"),
        (("all", "hi", ""), "notification_type = '': String should have at least 1 character"),
        (("all", "hi", "news", "bbcode"), "parse_mode = 'bbcode'"),
    ],
)
def test_bad_arguments_are_dead_at_once_naming_the_argument(
    bulk_runtime: Runtime,
    capturing_broker: DelayCapturingStubBroker,
    panel: Panel,
    clean_tables: sa.Engine,
    args: tuple[Any, ...],
    error: str,
) -> None:
    execute_bulk_broadcast.send(*args)
    run_until_idle(capturing_broker, "bulk")
    [(reason, text)] = dead_letters(clean_tables)
    assert reason == "bad_message" and error in text
    assert capturing_broker.held == [] and stream_calls(panel) == 0
    assert queued(clean_tables) == []
