"""Bounds how long a prefetched message can wait unacked in a worker's memory.

Dramatiq prefetches ``threads × 2`` messages per queue; with every thread busy on long actors a
prefetched message can wait unacked for several time limits, and RabbitMQ's ``consumer_timeout``
then closes the channel. With a prefetch of one message per thread, a waiting message is picked
up within one time limit, and settings require ``2 × TIME_LIMIT_MS < RABBITMQ_CONSUMER_TIMEOUT_MS``.
"""

from __future__ import annotations

from typing import Any

import dramatiq


class BoundedPrefetch(dramatiq.Middleware):
    """Sets the worker's per-queue prefetch to its thread count before consumers start."""

    def before_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        worker.queue_prefetch = worker.worker_threads
