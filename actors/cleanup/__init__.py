"""Cleanup: expired tokens, old audit/webhook logs, settled notifications, stale Redis keys.

Package = domain = queue ``cleanup``; retry policy: ``worker_app.policies.POLICIES['cleanup']``.
"""

from __future__ import annotations

from worker_app.heartbeat import declare_heartbeat

QUEUE = "cleanup"

heartbeat = declare_heartbeat(QUEUE)
