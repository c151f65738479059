"""Server health: node status checks, bandwidth snapshots, external-service probes, anomaly rules.

Package = domain = queue ``monitoring``; retry policy: ``worker_app.policies.POLICIES['monitoring']``
(2 retries 15 s apart, then skipped: the next run is the retry). One module per feature:

* :mod:`.health` — ``check_server_health`` (every 2 min), on the rules of :mod:`.node_state`;
* :mod:`.bandwidth` — ``collect_bandwidth_snapshots`` (every 5 min);
* :mod:`.services` — ``check_external_services`` (every 60 s);
* :mod:`.anomalies` — ``check_anomalies`` (every 5 min and after every health run);
* :mod:`.canary` — ``scheduler_canary`` (every minute).
"""

from __future__ import annotations

from actors.monitoring.anomalies import check_anomalies
from actors.monitoring.bandwidth import collect_bandwidth_snapshots
from actors.monitoring.canary import QUEUE, scheduler_canary
from actors.monitoring.health import check_server_health
from actors.monitoring.queue_depths import sample_queue_depths
from actors.monitoring.services import check_external_services
from worker_app.domains import register_dashboard, register_overview
from worker_app.heartbeat import declare_heartbeat

heartbeat = declare_heartbeat(QUEUE)
register_dashboard("actors.monitoring.dashboard:add_pages")
register_overview("actors.monitoring.dashboard:tiles")

__all__ = [
    "QUEUE",
    "check_anomalies",
    "check_external_services",
    "check_server_health",
    "collect_bandwidth_snapshots",
    "heartbeat",
    "sample_queue_depths",
    "scheduler_canary",
]
