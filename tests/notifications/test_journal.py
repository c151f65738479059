"""The sent journal on real PostgreSQL and Redis with the sandbox over HTTP: a send Telegram accepted
is never sent again because its batch or its message was cut off before PostgreSQL or RabbitMQ
heard of it (tier 1 for the drain, tier 2 for ``send_notification``)."""

from __future__ import annotations

from typing import Any

import dramatiq
import sqlalchemy as sa
from dramatiq.brokers.stub import StubBroker

from actors.notifications import send_notification
from actors.notifications.queue import drainer
from sandbox.server import RunningSandbox
from tests.fixtures.notifications import MakeRuntime, insert_rows, rows, unreachable_redis_url
from tests.notifications.test_actors import drain_stub
from worker_app.runtime import Runtime
from worker_app.telegram.journal import message_key, row_key
from worker_app.telegram.sender import SENT, Delivery


def test_rows_a_killed_drain_had_sent_are_settled_from_the_journal_not_sent_again(
    runtime: Runtime, sandbox: RunningSandbox, db_engine: sa.Engine, redis_client: Any
) -> None:
    # Given four due rows, two of which a drain killed before its commit had already sent
    ids = insert_rows(db_engine, [501, 502, 503, 504])
    for n, notification_id in enumerate(ids[:2]):
        runtime.send_journal.record(
            row_key(notification_id), Delivery(SENT, message_id=9000 + n, chat_id=501 + n, sent_at=1.7e9)
        )
    # When the queue is drained again
    report = runtime.service(drainer).drain()
    # Then only the other two reach Telegram, all four are sent, the journalled two with their ids
    assert sorted(e["chat_id"] for e in sandbox.state.received()) == [503, 504]
    assert report.sent == 4
    by_chat = {r["telegram_id"]: r for r in rows(db_engine)}
    assert [by_chat[c]["status"] for c in (501, 502, 503, 504)] == ["sent"] * 4
    assert (by_chat[501]["telegram_message_id"], by_chat[502]["telegram_message_id"]) == (9000, 9001)
    # And, PostgreSQL holding the outcomes now, the journal is emptied
    assert redis_client.keys("cybervpn:notifications:sent:*") == []


def test_every_accepted_send_is_journalled_before_its_batch_commits(
    runtime: Runtime, sandbox: RunningSandbox, db_engine: sa.Engine
) -> None:
    ids = insert_rows(db_engine, [511, 512])
    journal = runtime.send_journal
    seen: list[dict[str, Delivery]] = []
    original = runtime.service(drainer)._send_all

    def send_then_look(*args: Any) -> list[Delivery]:  # what a kill right after the sends would leave
        deliveries = original(*args)
        seen.append(journal.lookup([row_key(i) for i in ids]))
        return deliveries

    runtime.service(drainer)._send_all = send_then_look  # type: ignore[method-assign]
    runtime.service(drainer).drain()
    assert len(seen) == 1 and sorted(d.chat_id for d in seen[0].values() if d.chat_id) == [511, 512]


def test_with_redis_down_the_journal_is_skipped_and_rows_are_still_sent(
    make_runtime: MakeRuntime, sandbox: RunningSandbox, db_engine: sa.Engine
) -> None:
    runtime = make_runtime(REDIS_URL=unreachable_redis_url())
    insert_rows(db_engine, [521, 522, 523])
    report = runtime.service(drainer).drain()
    assert report.sent == 3 and len(sandbox.state.received()) == 3


def test_a_delivered_again_on_demand_send_returns_the_recorded_result_instead_of_sending(
    runtime: Runtime, stub_broker: StubBroker, stub_worker: dramatiq.Worker, sandbox: RunningSandbox
) -> None:
    # Given an on-demand send whose earlier delivery Telegram accepted before it could be acked (the
    # stub broker cannot flag a redelivery; a retry is the other way a message comes back)
    message = send_notification.message_with_options(args=(531, "hello", "expiry"), retries=1)
    runtime.send_journal.record(
        message_key(message.message_id), Delivery(SENT, message_id=4242, chat_id=531, sent_at=1.7e9)
    )
    # When it is delivered again
    stub_broker.enqueue(message)
    drain_stub(stub_broker, stub_worker)
    # Then Telegram is not called and the caller gets the first send's result
    result = message.get_result(block=True, timeout=5000)
    assert result["status"] == "sent" and result["message_id"] == 4242
    assert sandbox.state.received() == []


def test_a_first_delivery_does_not_look_the_journal_up(
    runtime: Runtime, stub_broker: StubBroker, stub_worker: dramatiq.Worker, sandbox: RunningSandbox
) -> None:
    # A first delivery cannot have been sent before: it sends (and records) without a lookup
    message = send_notification.message(532, "hello", "expiry")
    runtime.send_journal.record(
        message_key(message.message_id), Delivery(SENT, message_id=4243, chat_id=532, sent_at=1.7e9)
    )
    stub_broker.enqueue(message)
    drain_stub(stub_broker, stub_worker)
    assert message.get_result(block=True, timeout=5000)["message_id"] == 1
    assert len(sandbox.state.received()) == 1
