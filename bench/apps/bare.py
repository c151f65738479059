"""Contender "bare Dramatiq": a plain ``RabbitmqBroker`` with publisher confirms and Dramatiq's
default middleware, and the same no-op actor as :mod:`bench.apps.ours`.

``BENCH_QUEUE_TYPE=quorum`` swaps in :class:`QuorumRabbitmqBroker`: bare Dramatiq with the one
change that makes it declare quorum queues. ``BENCH_RABBITMQ_URL`` may name several nodes in
Dramatiq's own form, ``url1;url2;url3`` (pika tries them in order)."""

from __future__ import annotations

import os
from typing import Any

import dramatiq
from dramatiq.brokers.rabbitmq import DEAD_MESSAGE_TTL, RabbitmqBroker
from dramatiq.common import xq_name

from bench.apps.common import record_completion

QUEUE = "bench"


class QuorumRabbitmqBroker(RabbitmqBroker):
    """Dramatiq's broker declaring its three queues (``<q>``, ``<q>.DQ``, ``<q>.XQ``) as quorum
    queues, and nothing else changed.

    Dramatiq's own arguments all stay: ``x-dead-letter-exchange`` / ``x-dead-letter-routing-key``
    on ``<q>`` and ``<q>.DQ``, ``x-message-ttl`` on ``<q>.XQ`` — RabbitMQ 3.10 takes each on a
    quorum queue. The one it refuses, ``x-max-priority``, Dramatiq adds only with ``max_priority=``,
    which is not given; it is dropped here anyway so the class cannot declare it.
    """

    def _build_queue_arguments(self, queue_name: str) -> dict[str, Any]:
        arguments: dict[str, Any] = dict(super()._build_queue_arguments(queue_name))  # type: ignore[no-untyped-call]
        arguments.pop("x-max-priority", None)
        arguments["x-queue-type"] = "quorum"
        return arguments

    def _declare_xq_queue(self, queue_name: str) -> Any:
        arguments = {"x-message-ttl": DEAD_MESSAGE_TTL, "x-queue-type": "quorum"}
        return self.channel.queue_declare(queue=xq_name(queue_name), durable=True, arguments=arguments)


_BROKERS = {"classic": RabbitmqBroker, "quorum": QuorumRabbitmqBroker}

broker = _BROKERS[os.environ.get("BENCH_QUEUE_TYPE", "classic")](
    url=os.environ["BENCH_RABBITMQ_URL"], confirm_delivery=True
)
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
