"""``update_realtime_metrics`` (every 30 s): what the dashboard shows right now, in
``cybervpn:dashboard:realtime`` (TTL ``ANALYTICS_REALTIME_TTL_S``, 120 s — stale data disappears
rather than lingering)::

    {"at": "2026-12-07T10:00:30+00:00",
     "online_users": 412,
     "servers": {"active": 18, "total": 20, "disabled": 1},
     "bandwidth": {"bytes": 73400320, "bytes_per_s": 244667, "nodes": 18, "interval_s": 300},
     "events": [{"type": "node_status", "at": 1765101600.0, ...}]}

``online_users`` and ``servers`` come from one ``GET /api/nodes`` (``usersOnline`` summed;
``active``: connected and not disabled); ``bandwidth`` is the newest 5-minute snapshot of each node
(:mod:`actors.monitoring.bandwidth`) taken within the last ``2 × 5`` minutes, summed, with the rate
over its interval; ``events`` the 5 newest platform events (``cybervpn:events:recent``).
``worker-app stats`` prints it; the gauge ``cybervpn_realtime{figure}`` carries the three numbers.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import dramatiq
import redis

from actors.analytics import QUEUE
from actors.monitoring.bandwidth import snapshots_key
from worker_app.clients.remnawave import Node
from worker_app.events import recent
from worker_app.lazy import created_once
from worker_app.redis_client import key
from worker_app.runtime import get_runtime

log = logging.getLogger(__name__)
REALTIME_KEY = key("dashboard", "realtime")
#: A node's newest snapshot older than this is not "now" (the collector runs every 5 minutes).
FRESH_S = 600
EVENTS = 5


def snapshot(redis_client: redis.Redis, nodes: Sequence[Node], *, now: datetime) -> dict[str, Any]:
    """The realtime figures from the panel's ``nodes`` and what Redis holds."""
    with redis_client.pipeline(transaction=False) as pipe:
        for node in nodes:
            pipe.zrevrange(snapshots_key(node.uuid), 0, 0)
        newest = pipe.execute()
    fresh = [json.loads(m[0]) for m in newest if m]
    fresh = [s for s in fresh if now.timestamp() - float(s["at"]) <= FRESH_S]
    carried = sum(int(s["bytes"]) for s in fresh)
    seconds = sum(max(1.0, float(s["at"]) - float(s["since"])) for s in fresh) / len(fresh) if fresh else 0
    return {
        "at": now.isoformat(),
        "online_users": sum(n.users_online for n in nodes),
        "servers": {
            "active": sum(1 for n in nodes if n.is_connected and not n.is_disabled),
            "total": len(nodes),
            "disabled": sum(1 for n in nodes if n.is_disabled),
        },
        "bandwidth": {
            "bytes": carried,
            "bytes_per_s": int(carried / seconds) if seconds else 0,
            "nodes": len(fresh),
            "interval_s": int(seconds),
        },
        "events": recent(redis_client, EVENTS),
    }


@created_once
def _realtime_gauge() -> Any:
    import prometheus_client as prom

    return prom.Gauge(
        "cybervpn_realtime", "update_realtime_metrics' last figures: online_users, active_servers, "
        "bandwidth_bytes_per_s.", ("figure",), multiprocess_mode="mostrecent", registry=None,
    )  # fmt: skip


@dramatiq.actor(queue_name=QUEUE, store_results=True)
def update_realtime_metrics() -> dict[str, Any]:
    """Refresh ``cybervpn:dashboard:realtime`` (every 30 s)."""
    runtime = get_runtime()
    now = datetime.now(UTC)
    figures = snapshot(runtime.redis, runtime.remnawave.nodes(), now=now)
    ttl = timedelta(seconds=runtime.settings.analytics_realtime_ttl_s)
    runtime.redis.set(REALTIME_KEY, json.dumps(figures), ex=ttl)
    gauge = _realtime_gauge()
    gauge.labels("online_users").set(figures["online_users"])
    gauge.labels("active_servers").set(figures["servers"]["active"])
    gauge.labels("bandwidth_bytes_per_s").set(figures["bandwidth"]["bytes_per_s"])
    summary = {"job": "update_realtime_metrics", "online_users": figures["online_users"],
               **{f"servers_{k}": v for k, v in figures["servers"].items()}}  # fmt: skip
    log.info("analytics job done: update_realtime_metrics %s", summary, extra=summary)
    return summary
