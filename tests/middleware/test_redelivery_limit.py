"""RedeliveryLimit's bookkeeping around its solo gate, driven hook by hook against the real Redis."""

from __future__ import annotations

import os
import threading
from typing import Any

import redis
from dramatiq import Message
from dramatiq.brokers.rabbitmq import _RabbitmqMessage
from dramatiq.brokers.stub import StubBroker

from tests.fixtures.worker import wait_for
from worker_app.middleware.guards import RedeliveryLimit
from worker_app.redis_client import key


class LateDeletes(redis.Redis):
    """The real Redis, with every DEL held back until ``suspect_ran`` is set, or 0.3 s at most (a
    busy Redis, a descheduled thread): a suspect that can run before the DEL lands does so first."""

    suspect_ran: threading.Event

    def delete(self, *names: Any) -> Any:
        self.suspect_ran.wait(timeout=0.3)
        return super().delete(*names)


def redelivered(message_id: str) -> Any:
    """A message as the RabbitMQ consumer hands over one that RabbitMQ delivered again."""
    message: Message[Any] = Message(queue_name="analytics", actor_name="a", args=(), kwargs={}, options={})
    return _RabbitmqMessage(True, 1, message.copy(message_id=message_id))  # type: ignore[no-untyped-call]


def test_a_message_clears_its_running_marker_before_a_waiting_suspect_may_run(
    redis_client: redis.Redis,
) -> None:
    # Given a redelivered message running, and a suspect (found its marker set: it was running when
    # its last worker died) waiting at the gate to run alone
    client = LateDeletes(
        connection_pool=redis.ConnectionPool.from_url(os.environ["REDIS_URL"], decode_responses=True)
    )
    client.suspect_ran = threading.Event()
    guard, broker = RedeliveryLimit(client, max_redeliveries=2), StubBroker()
    innocent, suspect = redelivered("innocent-1"), redelivered("suspect-1")
    guard.before_process_message(broker, innocent)
    assert redis_client.exists(key("running", "innocent-1"))
    redis_client.set(key("running", "suspect-1"), "1")
    marker_when_suspect_ran: list[int] = []

    def run_suspect() -> None:
        guard.before_process_message(broker, suspect)
        # the suspect may kill the process right here: the innocent must hold no marker by now
        marker_when_suspect_ran.append(int(redis_client.exists(key("running", "innocent-1"))))
        client.suspect_ran.set()
        guard.after_process_message(broker, suspect)

    waiting = threading.Thread(target=run_suspect)
    waiting.start()
    wait_for(lambda: guard._gate._solo, 5, "the suspect to wait at the gate to run alone", poll_s=0.01)
    assert not marker_when_suspect_ran, "the suspect ran beside a running message"

    # When the innocent message ends
    guard.after_process_message(broker, innocent)
    waiting.join(timeout=5)

    # Then its marker was gone before the suspect could run: a crash now is not charged to it
    assert marker_when_suspect_ran == [0]
    assert redis_client.get(key("redeliveries", "innocent-1")) is None
    assert redis_client.get(key("redeliveries", "suspect-1")) == "1"
    client.close()
