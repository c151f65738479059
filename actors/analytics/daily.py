"""``aggregate_daily_stats`` (00:05 UTC): the day's key business figures in
``cybervpn:stats:daily:{YYYY-MM-DD}`` (TTL ``ANALYTICS_DAILY_TTL_DAYS``, 90 d), for the reports and
the admin SPA::

    {"date": "2026-12-06",
     "users": {"total": 1000, "by_status": {"ACTIVE": 800, "DISABLED": 50, "EXPIRED": 120, "LIMITED": 30},
               "new": 12, "top_traffic": [{"id": 17, "username": "alice", "used_traffic_bytes": 123}]},
     "bandwidth": {"total_bytes": 987654321, "hours_covered": 24,
                   "by_node": {"<uuid>": {"name": "de-fra-1", "bytes": 12345, "hours": 24}}},
     "revenue": {"completed": 3, "total": {"USDT": "15"},
                 "by_plan": {"monthly": {"count": 3, "amount": {"USDT": "15"}}}},
     "admin_operations": {"total": 4, "by_type": {"user.disable": 4}},
     "generated_at": "2026-12-07T00:05:01+00:00"}

Where each part comes from:

* ``users`` — the panel's users (one cursor stream): ``total`` registered (``createdAt``) before the
  day ended, ``by_status`` their status **as the panel reports it when the figures are made** (the
  panel keeps no status history: a backfilled day shows today's statuses of that day's users),
  ``new`` registered that day, ``top_traffic`` the 5 of them with the most traffic used;
* ``bandwidth`` — the day's hourly aggregates (:mod:`actors.analytics.hourly`), per node with the
  hours it has; ``hours_covered`` < 24 means part of the day is unknown (the collector was down, or
  the hours expired) — never read as zero;
* ``revenue`` — completed payments paid that day (:func:`actors.payments.financial_stats.compute`),
  per currency: a USDT and a TON payment are never added;
* ``admin_operations`` — ``audit_logs`` rows of the day not written by the worker itself, by action.

Idempotent: a run recomputes and overwrites; ``worker-app analytics backfill --from D --to D``
recomputes any days (their hourly bandwidth first, from the raw snapshots still kept).
"""

from __future__ import annotations

import heapq
import json
import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

import dramatiq
import redis
from sqlalchemy import text

from actors.analytics import QUEUE
from actors.analytics.hourly import hourly_key, known_nodes
from actors.payments.financial_stats import compute as payments_of
from worker_app.clients.remnawave import User
from worker_app.days import midnight, store_days
from worker_app.db import Database
from worker_app.redis_client import key
from worker_app.runtime import get_runtime

log = logging.getLogger(__name__)
TOP_USERS = 5

_ADMIN_OPERATIONS = text(
    """
    SELECT (created_at AT TIME ZONE 'UTC')::date AS day, action, count(*) AS n FROM audit_logs
    WHERE created_at >= :start AND created_at < :end AND actor <> 'worker'
    GROUP BY 1, 2
    """
)


#: ``cybervpn:stats:daily:{date}``.
DAILY_KEY = key("stats", "daily", "{date}")


def daily_key(day: date) -> str:
    return DAILY_KEY.format(date=day.isoformat())


def _created(user: User) -> datetime | None:
    raw = user.raw.get("createdAt")
    if not isinstance(raw, str):
        return None
    return datetime.fromisoformat(raw.replace("Z", "+00:00"))


def users_by_day(users: Iterable[User], days: list[date]) -> dict[date, dict[str, Any]]:
    """The ``users`` part of each of ``days``, from one pass over the panel's users."""
    ends = {d: midnight(d + timedelta(days=1)) for d in days}
    parts: dict[date, dict[str, Any]] = {
        d: {"total": 0, "by_status": Counter(), "new": 0, "top": []} for d in days
    }
    for user in users:
        created = _created(user)
        for day, end in ends.items():
            if created is not None and created >= end:
                continue
            part = parts[day]
            part["total"] += 1
            part["by_status"][user.status] += 1
            if created is not None and created >= end - timedelta(days=1):
                part["new"] += 1
            if user.used_traffic_bytes > 0:
                entry = (user.used_traffic_bytes, -user.id, user.id, user.username)
                (heapq.heappush if len(part["top"]) < TOP_USERS else heapq.heappushpop)(part["top"], entry)
    return {
        day: {
            "total": part["total"],
            "by_status": dict(sorted(part["by_status"].items())),
            "new": part["new"],
            "top_traffic": [
                {"id": uid, "username": name, "used_traffic_bytes": used}
                for used, _, uid, name in sorted(part["top"], reverse=True)
            ],
        }
        for day, part in parts.items()
    }


def bandwidth_of(redis_client: redis.Redis, nodes: Mapping[str, str], day: date) -> dict[str, Any]:
    """The ``bandwidth`` part of ``day`` from its hourly aggregates."""
    hours = [midnight(day) + timedelta(hours=h) for h in range(24)]
    by_node: dict[str, dict[str, Any]] = {}
    covered: set[int] = set()
    with redis_client.pipeline(transaction=False) as pipe:
        for uuid in nodes:
            pipe.mget([hourly_key(uuid, h) for h in hours])
        found = pipe.execute()
    for (uuid, name), values in zip(nodes.items(), found, strict=True):
        present = [(h, json.loads(v)) for h, v in enumerate(values) if v]
        if not present:
            continue
        covered.update(h for h, _ in present)
        carried = sum(int(s["sum_bytes"]) for _, s in present)
        by_node[uuid] = {"name": present[-1][1].get("name") or name, "bytes": carried, "hours": len(present)}
    return {
        "total_bytes": sum(n["bytes"] for n in by_node.values()),
        "hours_covered": len(covered),
        "by_node": dict(sorted(by_node.items(), key=lambda item: (-item[1]["bytes"], item[0]))),
    }


def revenue_of(payments: Mapping[str, Any]) -> dict[str, Any]:
    """The ``revenue`` part from the day's payments stats."""
    return {
        "completed": payments["completed"],
        "total": payments["total_revenue"],
        "by_plan": {
            plan: {"count": payments["count_by_plan"][plan], "amount": amount}
            for plan, amount in payments["revenue_by_plan"].items()
        },
    }


def admin_operations_of(database: Database, days: list[date]) -> dict[date, dict[str, Any]]:
    found: dict[date, Counter[str]] = {d: Counter() for d in days}
    with database.transaction() as s:
        rows = s.execute(_ADMIN_OPERATIONS, {"start": midnight(days[0]),
                                             "end": midnight(days[-1] + timedelta(days=1))})  # fmt: skip
        for r in rows:
            found[r.day][r.action] += r.n
    return {d: {"total": sum(c.values()), "by_type": dict(sorted(c.items()))} for d, c in found.items()}


def compute(
    database: Database, redis_client: redis.Redis, users: Iterable[User], nodes: Mapping[str, str],
    days: list[date], *, payments_stats: Iterable[Mapping[str, Any]], now: datetime,
) -> list[dict[str, Any]]:  # fmt: skip
    """The daily stats of ``days`` (consecutive, oldest first); ``payments_stats`` are those days'
    payments stats (:func:`actors.payments.financial_stats.compute`)."""
    user_parts = users_by_day(users, days)
    payments = {date.fromisoformat(p["date"]): p for p in payments_stats}
    operations = admin_operations_of(database, days)
    return [
        {
            "date": day.isoformat(),
            "users": user_parts[day],
            "bandwidth": bandwidth_of(redis_client, nodes, day),
            "revenue": revenue_of(payments[day]),
            "admin_operations": operations[day],
            "generated_at": now.isoformat(),
        }
        for day in days
    ]


def store(redis_client: redis.Redis, stats: list[dict[str, Any]], *, ttl: timedelta) -> None:
    store_days(redis_client, daily_key, stats, ttl=ttl)


@dramatiq.actor(queue_name=QUEUE, store_results=True)
def aggregate_daily_stats() -> dict[str, Any]:
    """Yesterday's (UTC) users, bandwidth, revenue and admin operations into
    ``cybervpn:stats:daily:{date}``."""
    runtime = get_runtime()
    now = datetime.now(UTC)
    day = now.date() - timedelta(days=1)
    nodes = known_nodes(runtime.redis, {n.uuid: n.name for n in runtime.remnawave.nodes()})
    payments = payments_of(runtime.database, day, day, now=now)
    users = runtime.remnawave.stream_users()
    [stats] = compute(runtime.database, runtime.redis, users, nodes, [day], payments_stats=payments, now=now)
    store(runtime.redis, [stats], ttl=timedelta(days=runtime.settings.analytics_daily_ttl_days))
    summary = {
        "job": "aggregate_daily_stats", "date": stats["date"], "users": stats["users"]["total"],
        "new_users": stats["users"]["new"], "bandwidth_bytes": stats["bandwidth"]["total_bytes"],
        "hours_covered": stats["bandwidth"]["hours_covered"], "payments": stats["revenue"]["completed"],
    }  # fmt: skip
    log.info("analytics job done: aggregate_daily_stats %s: %s users (%s new), %s payments", stats["date"],
             summary["users"], summary["new_users"], summary["payments"], extra=summary)  # fmt: skip
    return summary
