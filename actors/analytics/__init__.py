"""Analytics: daily, hourly-bandwidth and realtime aggregates in Redis.

Package = domain = queue ``analytics``; retry policy: ``worker_app.policies.POLICIES['analytics']``.
"""

from __future__ import annotations

from worker_app.heartbeat import declare_heartbeat

QUEUE = "analytics"

heartbeat = declare_heartbeat(QUEUE)
