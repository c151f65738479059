"""Bulk operations: user operations in batches with progress, bulk broadcasts, data exports.

Package = domain = queue ``bulk``; retry policy: ``worker_app.policies.POLICIES['bulk']``.
"""

from __future__ import annotations

from worker_app.heartbeat import declare_heartbeat

QUEUE = "bulk"

heartbeat = declare_heartbeat(QUEUE)
