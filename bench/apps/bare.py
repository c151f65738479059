"""Contender "bare Dramatiq": a plain ``RabbitmqBroker`` with publisher confirms and Dramatiq's
default middleware, and the same no-op actor as :mod:`bench.apps.ours`."""

from __future__ import annotations

import os

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker

from bench.apps.common import record_completion

QUEUE = "bench"

broker = RabbitmqBroker(url=os.environ["BENCH_RABBITMQ_URL"], confirm_delivery=True)
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name=QUEUE, actor_name="bench_noop")
def noop() -> None:
    """Does nothing but count its completion."""
    record_completion()


def send(count: int) -> None:
    """Enqueue ``count`` messages with Dramatiq's own producer (publisher confirms)."""
    for _ in range(count):
        noop.send()
    broker.close()
