"""Server health: node status checks, bandwidth snapshots, external-service probes.

Package = domain = queue ``monitoring``; retry policy: ``worker_app.policies.POLICIES['monitoring']``.
"""

from __future__ import annotations

import dramatiq
from dramatiq.middleware import CurrentMessage

from worker_app.heartbeat import declare_heartbeat
from worker_app.runtime import get_runtime
from worker_app.schedule_canary import record_canary

QUEUE = "monitoring"

heartbeat = declare_heartbeat(QUEUE)


@dramatiq.actor(queue_name=QUEUE, max_age=3_600_000)
def scheduler_canary() -> None:
    """Proves the scheduler → RabbitMQ → worker path end to end (scheduled every minute): records
    when the last scheduled canary ran and how late, in ``cybervpn:scheduler:canary``."""
    record_canary(get_runtime().redis, CurrentMessage.get_current_message())
