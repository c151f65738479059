"""Analytics: daily, hourly-bandwidth and realtime aggregates in Redis.

Package = domain = queue ``analytics``; retry policy: ``worker_app.policies.POLICIES['analytics']``.
One module per feature:

* :mod:`.hourly` — ``aggregate_bandwidth_hourly`` (:05 every hour);
* :mod:`.daily` — ``aggregate_daily_stats`` (00:05 UTC);
* :mod:`.realtime` — ``update_realtime_metrics`` (every 30 s);
* :mod:`.cli` — ``worker-app analytics backfill`` and ``worker-app stats``.
"""

from __future__ import annotations

from worker_app.domains import register_cli
from worker_app.heartbeat import declare_heartbeat

QUEUE = "analytics"

heartbeat = declare_heartbeat(QUEUE)
register_cli("actors.analytics.cli:analytics")
register_cli("actors.analytics.cli:stats")

from actors.analytics.daily import aggregate_daily_stats  # noqa: E402  (needs QUEUE)
from actors.analytics.hourly import aggregate_bandwidth_hourly  # noqa: E402
from actors.analytics.realtime import update_realtime_metrics  # noqa: E402

__all__ = [
    "QUEUE",
    "aggregate_bandwidth_hourly",
    "aggregate_daily_stats",
    "heartbeat",
    "update_realtime_metrics",
]
