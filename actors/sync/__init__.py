"""Remnawave sync: server geolocations, user stats and node configs cached in Redis.

Package = domain = queue ``sync``; retry policy: ``worker_app.policies.POLICIES['sync']`` (3 retries
2 min apart, then skipped: the next cycle is the retry). One module per feature:

* :mod:`.geolocations` — ``sync_server_geolocations`` (every 6 h), on the table of :mod:`.countries`;
* :mod:`.user_stats` — ``sync_user_stats`` (every 10 min);
* :mod:`.node_configs` — ``sync_node_configs`` (every 30 min);
* :mod:`.metrics` — ``cybervpn_sync_total{job,outcome}`` and each run's ``sync job done`` line.
"""

from __future__ import annotations

from worker_app.heartbeat import declare_heartbeat

QUEUE = "sync"

heartbeat = declare_heartbeat(QUEUE)

from actors.sync.geolocations import sync_server_geolocations  # noqa: E402  (needs QUEUE)
from actors.sync.node_configs import sync_node_configs  # noqa: E402
from actors.sync.user_stats import sync_user_stats  # noqa: E402

__all__ = [
    "QUEUE",
    "heartbeat",
    "sync_node_configs",
    "sync_server_geolocations",
    "sync_user_stats",
]
