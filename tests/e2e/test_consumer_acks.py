"""Tier 2: the consumer's coalesced acks and nacks, on the real RabbitMQ.

Worker threads settle deliveries concurrently; the consumer's I/O thread sends them in batches.
Any settlement lost on the way would leave its delivery unacked, and RabbitMQ puts an unacked
delivery back on the queue when the consumer closes, so the queue's depths after ``close`` count
exactly what was lost: nothing may be left on the queue, and the dead-letter queue holds exactly
the nacked messages.
"""

from __future__ import annotations

import itertools
import queue
import threading
import uuid
from typing import Any

import pika
import pytest
from dramatiq import Message

import worker_app
from tests.fixtures.scheduler import amqp_parameters, ready_count
from tests.fixtures.worker import wait_for
from worker_app.broker import _Consumer

pytestmark = pytest.mark.rabbitmq
MESSAGES = 3000
THREADS = 8


def consuming(count: int) -> tuple[str, _Consumer]:
    """A new queue holding ``count`` messages, and the product's consumer of it with all of them
    allowed in flight at once."""
    name = f"acks_{uuid.uuid4().hex[:8]}"
    worker_app.broker.declare_queue(name, ensure=True)
    with pika.BlockingConnection(amqp_parameters()) as conn:
        channel = conn.channel()
        for n in range(count):
            message: Message[Any] = Message(
                queue_name=name, actor_name="not_run", args=(n,), kwargs={}, options={}
            )
            channel.basic_publish("", name, message.encode())
    consumer = worker_app.broker.consume(name, prefetch=count, timeout=50)
    assert isinstance(consumer, _Consumer)
    return name, consumer


def test_concurrent_acks_and_nacks_all_reach_rabbitmq(rabbitmq_vhost: str) -> None:
    # Given a queue of MESSAGES deliveries, consumed with all of them in flight at once
    name, consumer = consuming(MESSAGES)

    # When THREADS worker threads settle them as they arrive: every 7th nacked, the rest acked
    inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
    nacked = itertools.count()
    start = threading.Barrier(THREADS + 1)

    def settle() -> None:
        start.wait()
        while (message := inbox.get()) is not None:
            if message.args[0] % 7 == 0:
                next(nacked)
                consumer.nack(message)
            else:
                consumer.ack(message)

    threads = [threading.Thread(target=settle) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    start.wait()
    received = 0
    while received < MESSAGES:
        message = next(consumer)  # also runs the I/O loop, which sends the queued settlements
        if message is not None:
            inbox.put(message)
            received += 1
    for _ in threads:
        inbox.put(None)
    for thread in threads:
        thread.join()
    consumer.close()  # sends what is still queued, then closes; anything unacked goes back

    # Then nothing came back, and exactly the nacked ones were dead-lettered
    expected_nacks = len(range(0, MESSAGES, 7))
    assert next(nacked) == expected_nacks
    assert (ready_count(name), ready_count(f"{name}.XQ")) == (0, expected_nacks)
    assert not consumer._settlements and not consumer._flush_pending


class _ChannelSpy:
    """The consumer's channel, recording each ``basic_ack`` as ``(tag, multiple)`` and calling
    ``during_ack`` (once) inside the first: as another worker thread could settle then, after the
    flush took its batch."""

    def __init__(self, channel: Any, during_ack: Any = None) -> None:
        self.channel, self.during_ack, self.acks = channel, during_ack, list[tuple[int, bool]]()

    def basic_ack(self, delivery_tag: int, multiple: bool = False) -> None:
        self.acks.append((delivery_tag, multiple))
        self.channel.basic_ack(delivery_tag, multiple=multiple)
        if self.during_ack is not None:
            during, self.during_ack = self.during_ack, None
            during()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.channel, name)


def in_flight(consumer: _Consumer, count: int) -> list[Any]:
    return [wait_for(lambda: next(consumer), 10, "a delivery") for _ in range(count)]


def flushed(consumer: _Consumer) -> bool:
    next(consumer)  # runs the I/O loop once (nothing is left to deliver)
    return not consumer._settlements and not consumer._flush_pending


def test_a_settlement_queued_as_a_flush_ends_is_sent_by_another_flush(rabbitmq_vhost: str) -> None:
    # Given two deliveries in flight
    name, consumer = consuming(2)
    first, second = in_flight(consumer, 2)

    # When the second is acked while the flush sending the first one's ack is sending it
    spy = _ChannelSpy(consumer.channel, during_ack=lambda: consumer.ack(second))
    consumer.channel = spy
    consumer.ack(first)

    # Then a second flush sends it: nothing is left waiting, and nothing comes back on close
    wait_for(lambda: flushed(consumer), 10, "every settlement to be sent")
    consumer.close()
    assert ready_count(name) == 0
    assert [tag for tag, _multiple in spy.acks] == [first._tag, second._tag]


def test_acks_of_one_flush_go_as_one_multiple_ack_unless_a_lower_delivery_still_runs(
    rabbitmq_vhost: str,
) -> None:
    # Given six deliveries in flight
    name, consumer = consuming(6)
    one, two, three, _four, five, six = in_flight(consumer, 6)
    spy = _ChannelSpy(consumer.channel)
    consumer.channel = spy

    # When 1, 2 and 3 are acked in one flush: nothing below 3 runs, so one multiple ack
    for message in (one, two, three):
        consumer.ack(message)
    wait_for(lambda: flushed(consumer), 10, "the first flush")
    assert spy.acks == [(three._tag, True)]

    # And 5 and 6 are acked in one flush while 4 still runs: each alone (a multiple ack of 6 would
    # settle 4 too)
    consumer.ack(five)
    consumer.ack(six)
    wait_for(lambda: flushed(consumer), 10, "the second flush")
    assert spy.acks[1:] == [(five._tag, False), (six._tag, False)]

    # Then closing with 4 unsettled puts exactly 4 back on the queue
    consumer.close()
    assert ready_count(name) == 1
