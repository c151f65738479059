"""Stand-in actors for every periodic job whose domain has not landed yet, so a scheduler bench can
run with every job of the table enabled. Import after ``worker_app``: ``dramatiq worker_app
bench.apps.scheduler_jobs``. Each stand-in is a no-op on the queue ``bench_scheduler``."""

from __future__ import annotations

import dramatiq

import worker_app
from scheduler.table import JOBS

QUEUE = "bench_scheduler"


def _noop() -> None:
    """A periodic job's stand-in: does nothing."""


for _job in JOBS:
    if _job.actor_name not in worker_app.broker.actors:
        dramatiq.actor(_noop, actor_name=_job.actor_name, queue_name=QUEUE)
