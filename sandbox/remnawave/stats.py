"""The panel's system and bandwidth answers (``/api/system/*``, ``/api/bandwidth-stats/nodes``): stable
numbers derived from the users and nodes, shaped as the 3.3.2 panel answers them."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sandbox.remnawave.format import USER_STATUSES, day, digest_hex, human_bytes, iso_ms
from sandbox.remnawave.records import NodeRecord, UserRecord

_COLORS = ("#7c3aed", "#2563eb", "#059669", "#d97706", "#dc2626", "#0891b2", "#db2777", "#65a30d")
_MAX_DAYS = 366


def system_stats(
    counts: Mapping[str, int],
    users: Iterable[UserRecord],
    nodes: Sequence[NodeRecord],
    started: int,
    now: int,
) -> dict[str, Any]:
    """``GET /api/system/stats``: all four status counts, online stats (a scan: rarely called)."""
    day_ago, week_ago = now - 86_400_000, now - 7 * 86_400_000
    online = Counter(
        "never" if u.online_ms is None else "day" if u.online_ms >= day_ago else "week"
        for u in users
        if u.online_ms is None or u.online_ms >= week_ago
    )
    users_online = sum(n.users_online for n in nodes if n.state == "online")
    lifetime = sum(n.traffic_used_bytes for n in nodes) * 12
    return {
        "cpu": {"cores": 4},
        "memory": {"total": 8 * 1024**3, "free": 5 * 1024**3, "used": 3 * 1024**3},
        "uptime": (now - started) / 1000,
        "timestamp": now,
        "users": {
            "statusCounts": {status: counts[status] for status in USER_STATUSES},
            "totalUsers": sum(counts[status] for status in USER_STATUSES),
        },
        "onlineStats": {
            "onlineNow": users_online,
            "lastDay": online["day"] + users_online,
            "lastWeek": online["day"] + online["week"] + users_online,
            "neverOnline": online["never"],
        },
        "nodes": {"totalOnline": users_online, "totalBytesLifetime": str(lifetime)},
    }


def bandwidth_summary(total_bytes: int) -> dict[str, Any]:
    """``GET /api/system/stats/bandwidth``: human-readable strings only, as the panel answers."""

    def stat(share: float) -> dict[str, str]:
        current, previous = total_bytes * share, total_bytes * share * 0.9
        return {
            "current": human_bytes(current),
            "previous": human_bytes(previous),
            "difference": human_bytes(current - previous),
        }

    return {
        "bandwidthLastTwoDays": stat(0.07),
        "bandwidthLastSevenDays": stat(0.23),
        "bandwidthLast30Days": stat(1.0),
        "bandwidthCalendarMonth": stat(0.8),
        "bandwidthCurrentYear": stat(5.0),
    }


def runtime_metrics(started: int, now: int) -> dict[str, Any]:
    """One ``runtimeMetrics`` entry of ``GET /api/system/health``."""
    return {
        "rss": 310_000_000,
        "heapUsed": 150_000_000,
        "heapTotal": 190_000_000,
        "external": 9_000_000,
        "arrayBuffers": 1_000_000,
        "eventLoopDelayMs": 1.2,
        "eventLoopP99Ms": 4.8,
        "activeHandles": 42,
        "uptime": (now - started) / 1000,
        "pid": os.getpid(),
        "timestamp": now,
        "instanceId": "sandbox-api-1",
        "instanceType": "api",
    }


def metadata(version: str, started: int) -> dict[str, Any]:
    """``GET /api/system/metadata`` (the route exists from 2.5.0; ``version`` is settable)."""
    sha = digest_hex("build", version)[:40]
    return {
        "version": version,
        "build": {"time": iso_ms(started), "number": "1"},
        "git": {
            "backend": {
                "commitSha": sha,
                "branch": "main",
                "commitUrl": f"https://github.com/remnawave/backend/commit/{sha}",
            },
            "frontend": {
                "commitSha": sha,
                "commitUrl": f"https://github.com/remnawave/frontend/commit/{sha}",
            },
        },
    }


def days_between(start: Any, end: Any) -> list[str]:
    """The ``YYYY-MM-DD`` days from ``start`` to ``end`` inclusive (at most a year's worth)."""
    first = datetime.strptime(day(start, ["start"]), "%Y-%m-%d")
    last = datetime.strptime(day(end, ["end"]), "%Y-%m-%d")
    count = min(_MAX_DAYS, max(0, (last - first).days + 1))
    return [(first + timedelta(days=i)).strftime("%Y-%m-%d") for i in range(count)]


def node_bandwidth(nodes: Sequence[NodeRecord], days: Sequence[str], top: int) -> dict[str, Any]:
    """``GET /api/bandwidth-stats/nodes``: each node's traffic spread over the days (numbers)."""
    series: list[dict[str, Any]] = []
    for position, n in enumerate(nodes):
        daily = n.traffic_used_bytes // 30
        data = [daily * (90 + (i * 7 + n.id) % 21) // 100 for i in range(len(days))]
        series.append(
            {
                "uuid": n.uuid,
                "name": n.name,
                "color": _COLORS[position % len(_COLORS)],
                "countryCode": n.country_code,
                "total": sum(data),
                "data": data,
            }
        )
    top_nodes = sorted(series, key=lambda s: -s["total"])[:top]
    return {
        "categories": list(days),
        "sparklineData": [sum(s["data"][i] for s in series) for i in range(len(days))],
        "topNodes": [{k: s[k] for k in ("uuid", "color", "name", "countryCode", "total")} for s in top_nodes],
        "series": series,
    }
