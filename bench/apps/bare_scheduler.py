"""Baseline of ``bench.scheduler``: the scheduler a Dramatiq user writes from the docs — APScheduler's
BlockingScheduler calling ``actor.send()`` on a plain RabbitmqBroker with publisher confirms, with
one interval job per job of our table. No leader election, no dedup, no metrics."""

from __future__ import annotations

import os
import signal
from datetime import UTC
from typing import Any

import dramatiq
from apscheduler.schedulers.blocking import BlockingScheduler
from dramatiq.brokers.rabbitmq import RabbitmqBroker

broker = RabbitmqBroker(url=os.environ["BENCH_RABBITMQ_URL"], confirm_delivery=True)
dramatiq.set_broker(broker)


def _noop() -> None:
    """Never runs here (no worker consumes the baseline's queue)."""


def main() -> None:
    every_s = int(os.environ.get("BENCH_EVERY_S", "2"))
    scheduler = BlockingScheduler(timezone=UTC)
    for name in os.environ["BENCH_JOBS"].split(","):  # the job table's actor names, from the bench
        actor: Any = dramatiq.actor(_noop, actor_name=name, queue_name="bench_scheduler_bare")
        scheduler.add_job(actor.send, "interval", seconds=every_s, id=name, misfire_grace_time=30)
    signal.signal(signal.SIGTERM, lambda *_: scheduler.shutdown(wait=False))
    scheduler.start()


if __name__ == "__main__":
    main()
