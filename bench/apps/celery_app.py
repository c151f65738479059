"""Contender "Celery": the same no-op task, configured as a production Celery user configures
for reliability: ``acks_late`` (ack after the task ran), ``reject_on_worker_lost``, persistent
messages on a durable queue, publisher confirms, no result backend. The prefetch multiplier comes
from ``BENCH_CELERY_PREFETCH`` (Celery's default is 4; 1 is the usual advice with acks_late)."""

from __future__ import annotations

import os

from celery import Celery  # type: ignore[import-untyped]

from bench.apps.common import record_completion

QUEUE = "bench"

app = Celery("bench", broker=os.environ["BENCH_RABBITMQ_URL"])
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=int(os.environ.get("BENCH_CELERY_PREFETCH", "4")),
    task_ignore_result=True,
    result_backend=None,
    task_default_queue=QUEUE,
    task_default_delivery_mode="persistent",
    broker_transport_options={"confirm_publish": True},
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=True,
)


@app.task(name="bench.noop")  # type: ignore[untyped-decorator]
def noop() -> None:
    """Does nothing but count its completion."""
    record_completion()


def send(count: int) -> None:
    """Enqueue ``count`` messages with Celery's own producer (``delay``, publisher confirms)."""
    for _ in range(count):
        noop.delay()
    app.close()
