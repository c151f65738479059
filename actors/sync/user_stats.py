"""``sync_user_stats`` (every 10 min): the panel's user counts cached in Redis for the dashboard.

One call, ``GET /api/system/stats`` (the panel counts its users itself: no scan of 100,000 users),
becomes ``cybervpn:users:stats:summary``, a JSON object with a TTL of SYNC_USER_STATS_TTL_S (15 min,
so it outlives one missed run but not two):

``total``, ``active``, ``disabled``, ``limited``, ``expired`` — users by status (all four, their sum is
the total); ``online`` — users online now; ``online_last_day``, ``online_last_week``,
``never_online``; ``lifetime_traffic_bytes`` — bytes every node ever carried (the panel sends digits
as a string); ``panel_timestamp`` — the panel's clock (ISO-8601) and ``synced_at`` — when the worker
wrote it.

A reply that does not fit (a count missing or not a number) is
:class:`~worker_app.clients.remnawave.RemnawaveUnavailable`, like every malformed panel reply: the
run fails, is retried per the sync policy, and the previous summary stays until its TTL — a wrong
number is never cached.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import dramatiq
import redis

from actors.sync import QUEUE
from actors.sync.metrics import job_done
from worker_app.clients.remnawave import USER_STATUSES, RemnawaveUnavailable
from worker_app.redis_client import key
from worker_app.runtime import get_runtime
from worker_app.timefmt import iso_ms

JOB = "sync_user_stats"
SUMMARY_KEY = key("users", "stats", "summary")


def summary_of(stats: Mapping[str, Any], *, now: datetime) -> dict[str, Any]:
    """The cached summary for one ``/api/system/stats`` reply."""
    try:
        by_status = {s.lower(): _count(stats["users"]["statusCounts"][s]) for s in USER_STATUSES}
        online = stats["onlineStats"]
        summary: dict[str, Any] = {
            "total": sum(by_status.values()),
            **by_status,
            "online": _count(online["onlineNow"]),
            "online_last_day": _count(online["lastDay"]),
            "online_last_week": _count(online["lastWeek"]),
            "never_online": _count(online["neverOnline"]),
            "lifetime_traffic_bytes": _count((stats.get("nodes") or {}).get("totalBytesLifetime") or 0),
        }
        stamp = stats.get("timestamp")
    except (KeyError, TypeError, ValueError) as e:
        raise RemnawaveUnavailable(f"remnawave: malformed system stats ({type(e).__name__}: {e})") from e
    summary["panel_timestamp"] = _panel_time(stamp)
    summary["synced_at"] = iso_ms(now)
    return summary


def write_summary(redis_client: redis.Redis, summary: Mapping[str, Any], *, ttl_s: int) -> None:
    """Replace the cached summary, with its TTL, in one command."""
    redis_client.set(SUMMARY_KEY, json.dumps(summary, separators=(",", ":")), ex=ttl_s)


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError(f"{value!r} is not a count")
    number = int(value)
    if number < 0:
        raise ValueError(f"{number} is not a count")
    return number


def _panel_time(stamp: Any) -> str | None:
    """The panel's ``timestamp`` (epoch ms) as ISO-8601; ``None`` if it sent none."""
    if isinstance(stamp, bool) or not isinstance(stamp, int | float):
        return None
    return iso_ms(datetime.fromtimestamp(stamp / 1000, UTC))


@dramatiq.actor(queue_name=QUEUE, store_results=True)
def sync_user_stats() -> dict[str, Any]:
    """Cache the panel's user counts in ``cybervpn:users:stats:summary`` (every 10 min)."""
    runtime = get_runtime()
    started = time.monotonic()
    summary = summary_of(runtime.remnawave.system_stats(), now=datetime.now(UTC))
    write_summary(runtime.redis, summary, ttl_s=runtime.settings.sync_user_stats_ttl_s)
    counts = {"written": 1}
    return job_done(JOB, counts, started, total=summary["total"], online=summary["online"])
