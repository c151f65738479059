"""``sample_queue_depths`` (every minute): every domain queue's ready, delayed and dead messages into
the Redis history the dashboard charts (:mod:`worker_app.queue_history`)."""

from __future__ import annotations

import logging
import time
from typing import Any

import dramatiq

from actors.monitoring.canary import QUEUE
from worker_app import queue_history
from worker_app.queues import queue_report
from worker_app.runtime import get_runtime

log = logging.getLogger("actors.monitoring")
JOB = "sample_queue_depths"


@dramatiq.actor(queue_name=QUEUE, max_age=120_000, store_results=True)
def sample_queue_depths() -> dict[str, Any]:
    """One sample of the queue depths (from the management API, or passive declares without it);
    an old message (over 2 min) is skipped: a late sample would land in the wrong minute's slot."""
    runtime = get_runtime()
    now = time.time()
    report = queue_report(runtime.settings)
    queues = queue_history.record(runtime.redis, report, now)
    summary = {
        "job": JOB, "queues": queues, "source": report.source,
        "ready": sum(q.ready for q in report.queues), "delayed": sum(q.delayed for q in report.queues),
        "dead": sum(q.dead for q in report.queues),
    }  # fmt: skip
    log.info("monitoring job done: %s %s", JOB, {k: summary[k] for k in ("ready", "delayed", "dead")},
             extra=summary)  # fmt: skip
    return summary
