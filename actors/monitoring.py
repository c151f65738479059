"""Server health: node status checks, bandwidth snapshots, external-service probes.

Module = domain = queue ``monitoring``; retry policy: ``worker_app.policies.POLICIES['monitoring']``.
"""

from __future__ import annotations

from worker_app.heartbeat import declare_heartbeat

QUEUE = "monitoring"

heartbeat = declare_heartbeat(QUEUE)
