"""Reports: daily and weekly admin reports, anomaly alerts.

Package = domain = queue ``reports``; retry policy: ``worker_app.policies.POLICIES['reports']``.
"""

from __future__ import annotations

from worker_app.heartbeat import declare_heartbeat

QUEUE = "reports"

heartbeat = declare_heartbeat(QUEUE)
