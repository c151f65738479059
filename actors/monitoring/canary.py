"""``scheduler_canary`` (every minute): proves the scheduler → RabbitMQ → worker path end to end
(:mod:`worker_app.schedule_canary`)."""

from __future__ import annotations

import dramatiq
from dramatiq.middleware import CurrentMessage

from worker_app.runtime import get_runtime
from worker_app.schedule_canary import record_canary

QUEUE = "monitoring"


@dramatiq.actor(queue_name=QUEUE, max_age=3_600_000)
def scheduler_canary() -> None:
    """Records when the last scheduled canary ran and how late, in ``cybervpn:scheduler:canary``."""
    record_canary(get_runtime().redis, CurrentMessage.get_current_message())
