"""Remnawave sync: server geolocations, user stats and node configs cached in Redis.

Package = domain = queue ``sync``; retry policy: ``worker_app.policies.POLICIES['sync']``.
"""

from __future__ import annotations

from worker_app.heartbeat import declare_heartbeat

QUEUE = "sync"

heartbeat = declare_heartbeat(QUEUE)
