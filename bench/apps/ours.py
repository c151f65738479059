"""Contender "ours": the product's broker and full middleware stack (``import worker_app`` builds
them from the environment) with a no-op actor on a queue of its own."""

from __future__ import annotations

import dramatiq

import worker_app  # noqa: F401  (sets the product's broker before the actor below is declared)
from bench.apps.common import record_completion

QUEUE = "bench"


@dramatiq.actor(queue_name=QUEUE, actor_name="bench_noop")
def noop() -> None:
    """Does nothing but count its completion."""
    record_completion()


def send(count: int) -> None:
    """Enqueue ``count`` messages through the product's producer path (enqueue middleware, confirms)."""
    for _ in range(count):
        noop.send()
    dramatiq.get_broker().close()
