"""Synthetic stored aggregates for the report tests, in exactly the shapes their writers store:
``cybervpn:stats:daily:{date}`` (analytics), ``cybervpn:stats:payments:{date}`` (payments) and the
nodes' health keys (monitoring)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import redis

from actors.analytics.daily import daily_key
from actors.monitoring.health import NODES_KEY, current_key, history_key
from actors.monitoring.node_state import NodeState
from actors.payments.financial_stats import key as payments_key
from actors.reports.sections import Options

#: The synthetic week: Monday 2026-11-30 to Sunday 2026-12-06; the week before it; "now" is the
#: Monday after, 07:00 UTC, when the scheduler sends the weekly report.
MONDAY = date(2026, 11, 30)
SUNDAY = MONDAY + timedelta(days=6)
NOW = datetime.combine(SUNDAY + timedelta(days=1), time(7), tzinfo=UTC).timestamp()
OPTIONS = Options(history_days=14)
NODE_1, NODE_2, NODE_3 = (
    "6f0c1a2b-0000-4000-8000-000000000001",
    "6f0c1a2b-0000-4000-8000-000000000002",
    ("6f0c1a2b-0000-4000-8000-000000000003"),
)


def at(day: date, hh: int = 0, mm: int = 0) -> float:
    return datetime.combine(day, time(hh, mm), tzinfo=UTC).timestamp()


def daily_stats(
    day: date, *, new: int = 12, expired: int = 120, revenue: str = "15", **sections: Any
) -> dict[str, Any]:
    """A valid ``cybervpn:stats:daily`` value; ``sections`` replace whole top-level sections."""
    stats: dict[str, Any] = {
        "date": day.isoformat(),
        "users": {
            "total": 1000, "by_status": {"ACTIVE": 800, "DISABLED": 50, "EXPIRED": expired, "LIMITED": 30},
            "new": new,
            "top_traffic": [{"id": 17, "username": "alice", "used_traffic_bytes": 123_456_789},
                            {"id": 18, "username": "bob", "used_traffic_bytes": 23_456_789}],
        },
        "bandwidth": {
            "total_bytes": 987_654_321 + new, "hours_covered": 24,
            "by_node": {NODE_1: {"name": "de-fra-1", "bytes": 600_000_000},
                        NODE_2: {"name": "nl-ams-1", "bytes": 387_654_321}},
        },
        "revenue": {"completed": 3, "total": {"USDT": revenue},
                    "by_plan": {"monthly": {"count": 3, "amount": {"USDT": revenue}}}},
        "admin_operations": {"total": 4, "by_type": {"user.disable": 3, "user.enable": 1}},
        "generated_at": f"{day + timedelta(days=1)}T00:05:01+00:00",
    }  # fmt: skip
    stats.update(sections)
    return stats


def payment_stats(day: date, *, revenue: str = "15", **fields: Any) -> dict[str, Any]:
    """A valid ``cybervpn:stats:payments`` value (as ``aggregate_financial_stats`` writes it)."""
    stats: dict[str, Any] = {
        "date": day.isoformat(), "completed": 3, "total_revenue": {"USDT": revenue},
        "avg_amount": {"USDT": "5"}, "count_by_plan": {"monthly": 3}, "count_by_provider": {"cryptobot": 3},
        "revenue_by_provider": {"cryptobot": {"USDT": revenue}},
        "created_by_status": {"completed": 3, "pending": 1}, "unactivated": {},
        "generated_at": f"{day + timedelta(days=1)}T00:30:02+00:00",
    }  # fmt: skip
    stats.update(fields)
    return stats


def store(
    client: redis.Redis, *, daily: dict[date, dict[str, Any]], payments: dict[date, dict[str, Any]]
) -> None:
    for day, stats in daily.items():
        client.set(daily_key(day), json.dumps(stats))
    for day, stats in payments.items():
        client.set(payments_key(day), json.dumps(stats))


def two_weeks(client: redis.Redis, *, skip: tuple[date, ...] = (), **kwargs: Any) -> list[date]:
    """Both weeks stored (all but ``skip``), ``kwargs`` passed to both builders; the days stored."""
    days = [MONDAY - timedelta(days=7) + timedelta(days=n) for n in range(14)]
    kept = [d for d in days if d not in skip]
    revenue = kwargs.pop("revenue", "15")
    store(client, daily={d: daily_stats(d, revenue=revenue, **kwargs) for d in kept},
          payments={d: payment_stats(d, revenue=revenue) for d in kept})  # fmt: skip
    return kept


def node(
    client: redis.Redis, uuid: str, name: str, *, status: str, since: float,
    changes: tuple[tuple[float, str, str], ...] = (),
) -> None:  # fmt: skip
    """A node as ``check_server_health`` stores it: its state, and its changes ``(at, from, to)``."""
    state = NodeState(uuid, name, status, since, NOW)
    client.set(current_key(uuid), json.dumps(state.as_json()))
    client.sadd(NODES_KEY, uuid)
    for when, old, new in changes:
        client.zadd(history_key(uuid), {json.dumps({"status": new, "from": old, "at": when}): when})


def healthy_fleet(client: redis.Redis) -> None:
    """Node 1 offline 3 h on Wednesday; node 2 online all along; node 3 flapping twice on Sunday."""
    wednesday, sunday = MONDAY + timedelta(days=2), SUNDAY
    outage = ((at(wednesday, 10), "online", "offline"), (at(wednesday, 13), "offline", "online"))
    node(client, NODE_1, "de-fra-1", status="online", since=at(wednesday, 13), changes=outage)
    node(client, NODE_2, "nl-ams-1", status="online", since=at(MONDAY - timedelta(days=30)))
    node(client, NODE_3, "us-nyc-1", status="online", since=at(sunday, 9, 30), changes=(
        (at(sunday, 9), "online", "offline"), (at(sunday, 9, 5), "offline", "online"),
        (at(sunday, 9, 20), "online", "offline"), (at(sunday, 9, 30), "offline", "online"),
    ))  # fmt: skip
