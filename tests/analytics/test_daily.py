"""The analytics acceptance run on the real services: the sandbox panel seeded with 1,000 users
registered over 30 days and 20 nodes, a week of 5-minute bandwidth snapshots in Redis (one node
silent for part of it, one carrying nothing), a week of payments and audit rows in PostgreSQL.
``worker-app analytics backfill`` over the week gives daily aggregates equal to figures computed
here, independently, from the seeded data; running it again gives the same; keys carry their TTLs."""

from __future__ import annotations

import json
import os
import random
import subprocess
import uuid
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import redis
import sqlalchemy as sa

from actors.analytics.daily import daily_key
from actors.analytics.hourly import hourly_key
from actors.monitoring.bandwidth import snapshots_key
from actors.notifications.queue import drainer
from actors.reports.daily import daily_report
from actors.reports.delivery import deliver
from actors.reports.sections import Options
from actors.reports.weekly import weekly_report
from sandbox.server import RunningSandbox
from tests.fixtures.api import WORKER_APP
from tests.fixtures.notifications import ADMIN_CHAT
from tests.fixtures.remnawave import Panel
from tests.reports.telegram_html import check
from worker_app.runtime import Runtime

STATUSES = ("ACTIVE", "ACTIVE", "ACTIVE", "DISABLED", "EXPIRED", "LIMITED")


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


def seed_users(panel: Panel, rng: random.Random, now: datetime) -> list[dict[str, Any]]:
    users = []
    for n in range(1000):
        created = now - timedelta(seconds=rng.randrange(30 * 86_400))
        users.append(
            {
                "username": f"user{n}",
                "status": rng.choice(STATUSES),
                "createdAt": iso(created),
                "expireAt": iso(now + timedelta(days=rng.randrange(1, 40))),
                "userTraffic": {"usedTrafficBytes": rng.randrange(10**9) * 1000 + n},  # all different
            }
        )
    first = panel.add_users(*users)[0]
    return [
        {**u, "id": first + i, "created": datetime.fromisoformat(u["createdAt"].replace("Z", "+00:00"))}
        for i, u in enumerate(users)
    ]


def seed_nodes(panel: Panel) -> dict[str, str]:
    names = [f"node-{i}" for i in range(20)]
    uuids = panel.add_nodes(*({"name": name, "countryCode": "DE", "state": "online"} for name in names))
    return dict(zip(uuids, names, strict=True))


def seed_snapshots(
    client: redis.Redis, nodes: dict[str, str], days: list[date], rng: random.Random
) -> dict[tuple[str, date], tuple[int, set[int]]]:
    """5-minute snapshots over ``days``: node 0 silent from 10:00 to 14:00 each day, node 1 carrying
    nothing. Returns (node, day) → (bytes, hours with snapshots)."""
    expected: dict[tuple[str, date], tuple[int, set[int]]] = {}
    uuids = list(nodes)
    with client.pipeline(transaction=False) as pipe:
        for index, node in enumerate(uuids):
            for day in days:
                total, hours = 0, set()
                for step in range(288):
                    at = midnight(day) + timedelta(minutes=5 * step)
                    if index == 0 and 10 <= at.hour < 14:
                        continue
                    size = 0 if index == 1 else rng.randrange(10**6)
                    member = {
                        "at": at.timestamp(),
                        "bytes": size,
                        "since": at.timestamp() - 300,
                        "reset": False,
                    }
                    pipe.zadd(snapshots_key(node), {json.dumps(member): at.timestamp()})
                    total += size
                    hours.add(at.hour)
                expected[(node, day)] = (total, hours)
        pipe.execute()
    return expected


def seed_payments(engine: sa.Engine, days: list[date], rng: random.Random) -> list[dict[str, Any]]:
    plans = {"monthly": uuid.uuid4(), "yearly": uuid.uuid4()}
    rows = []
    with engine.begin() as conn:
        for name, plan_id in plans.items():
            conn.execute(
                sa.text(
                    "INSERT INTO subscription_plans (id, name, duration_days, price, currency) "
                    "VALUES (:id, :n, 30, 5, 'USD')"
                ),
                {"id": plan_id, "n": name},
            )
        for day in days:
            for _ in range(rng.randrange(3, 9)):
                at = midnight(day) + timedelta(seconds=rng.randrange(86_400))
                row = {
                    "id": uuid.uuid4(),
                    "plan": rng.choice([None, *plans.values()]),
                    "amount": Decimal(rng.choice(["5", "7.5", "50"])),
                    "currency": rng.choice(["USDT", "TON"]),
                    "status": rng.choice(["completed", "completed", "failed", "pending"]),
                    "at": at,
                }
                row["paid"] = at if row["status"] == "completed" else None
                conn.execute(
                    sa.text(
                        "INSERT INTO payments (id, user_id, plan_id, amount, currency, status, created_at, "
                        "paid_at, subscription_days) VALUES (:id, 1, :plan, :amount, :currency, :status, "
                        ":at, :paid, 30)"
                    ),
                    row,
                )
                rows.append(
                    {**row, "plan_name": next((n for n, p in plans.items() if p == row["plan"]), "none")}
                )
    return rows


def seed_audit(engine: sa.Engine, days: list[date], rng: random.Random) -> list[tuple[date, str, str]]:
    rows = []
    with engine.begin() as conn:
        for day in days:
            for _ in range(rng.randrange(0, 6)):
                actor, action = rng.choice(
                    [("admin:1", "user.disable"), ("admin:2", "user.extend"), ("worker", "user.disable")]
                )
                at = midnight(day) + timedelta(seconds=rng.randrange(86_400))
                conn.execute(
                    sa.text("INSERT INTO audit_logs (actor, action, created_at) VALUES (:a, :b, :t)"),
                    {"a": actor, "b": action, "t": at},
                )
                rows.append((day, actor, action))
    return rows


def expected_day(
    day: date,
    users: list[dict[str, Any]],
    nodes: dict[str, str],
    bandwidth: dict[tuple[str, date], tuple[int, set[int]]],
    payments: list[dict[str, Any]],
    audit: list[tuple[date, str, str]],
) -> dict[str, Any]:
    end = midnight(day + timedelta(days=1))
    registered = [u for u in users if u["created"] < end]
    top = sorted(
        (u for u in registered if u["userTraffic"]["usedTrafficBytes"] > 0),
        key=lambda u: -u["userTraffic"]["usedTrafficBytes"],
    )[:5]
    by_node = {}
    for node, name in nodes.items():
        carried, hours = bandwidth[(node, day)]
        by_node[node] = {"name": name, "bytes": carried, "hours": len(hours)}
    paid = [p for p in payments if p["paid"] is not None and midnight(day) <= p["paid"] < end]
    total: defaultdict[str, Decimal] = defaultdict(Decimal)
    by_plan: defaultdict[str, dict[str, Any]] = defaultdict(
        lambda: {"count": 0, "amount": defaultdict(Decimal)}
    )
    for p in paid:
        total[p["currency"]] += p["amount"]
        by_plan[p["plan_name"]]["count"] += 1
        by_plan[p["plan_name"]]["amount"][p["currency"]] += p["amount"]
    ops = Counter(action for d, actor, action in audit if d == day and actor != "worker")

    def money(amounts: dict[str, Decimal]) -> dict[str, str]:
        return {c: f"{v.normalize():f}" for c, v in sorted(amounts.items())}

    return {
        "date": day.isoformat(),
        "users": {
            "total": len(registered),
            "by_status": dict(sorted(Counter(u["status"] for u in registered).items())),
            "new": sum(1 for u in registered if u["created"] >= end - timedelta(days=1)),
            "top_traffic": [
                {
                    "id": u["id"],
                    "username": u["username"],
                    "used_traffic_bytes": u["userTraffic"]["usedTrafficBytes"],
                }
                for u in top
            ],
        },
        "bandwidth": {
            "total_bytes": sum(n["bytes"] for n in by_node.values()),
            "hours_covered": 24,  # only node 0 was silent: the others cover every hour
            "by_node": dict(sorted(by_node.items(), key=lambda item: (-item[1]["bytes"], item[0]))),
        },
        "revenue": {
            "completed": len(paid),
            "total": money(total),
            "by_plan": {
                plan: {"count": v["count"], "amount": money(v["amount"])}
                for plan, v in sorted(by_plan.items())
            },
        },
        "admin_operations": {"total": sum(ops.values()), "by_type": dict(sorted(ops.items()))},
    }


def check_reports(
    runtime: Runtime, sandbox: RunningSandbox, week: list[date], now: datetime, last: dict[str, Any]
) -> None:
    """The daily report of the week's last day and the weekly report of its Monday's week, built from
    the aggregates the backfill stored, checked as Telegram parses them and sent to the sandbox."""
    monday = next(d for d in week if d.weekday() == 0)
    options = Options.from_settings(runtime.settings)
    reports = [
        daily_report(runtime.redis, runtime.database, week[-1], now=now.timestamp(), options=options),
        weekly_report(runtime.redis, runtime.database, monday, now=now.timestamp(), options=options),
    ]
    shown = [check(part).text for report in reports for part in report.parts]
    users = last["users"]
    assert f"New: {users['new']} · total: {users['total']}" in shown[0]
    for report in reports:
        deliver(runtime.database, report, [ADMIN_CHAT])
    runtime.service(drainer).drain()
    received = sandbox.state.received()
    assert len(received) == len(shown)
    assert all(e["status"] == 200 and e["parse_mode"] == "HTML" for e in received), received


def test_a_backfilled_week_matches_the_seeded_data_and_a_second_run_changes_nothing(
    panel: Panel, panel_runtime: Runtime, sandbox: RunningSandbox, clean_tables: sa.Engine,
    redis_client: redis.Redis,
) -> None:  # fmt: skip
    rng = random.Random(18)
    now = datetime.now(UTC)
    week = [now.date() - timedelta(days=n) for n in range(7, 0, -1)]
    users = seed_users(panel, rng, now)
    nodes = seed_nodes(panel)
    bandwidth = seed_snapshots(redis_client, nodes, week, rng)
    payments = seed_payments(clean_tables, week, rng)
    audit = seed_audit(clean_tables, week, rng)

    def backfill() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [WORKER_APP, "analytics", "backfill", "--from", str(week[0]), "--to", str(week[-1])],
            env={**os.environ, "REMNAWAVE_URL": panel.url},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    first = backfill()
    assert first.returncode == 0, first.stderr
    assert f"backfilled 7 day(s): {7 * 24 * 20 - 7 * 4} hourly bandwidth keys written" in first.stderr

    def stored() -> list[dict[str, Any]]:
        days = [json.loads(redis_client.get(daily_key(d)) or "{}") for d in week]
        for day in days:
            day.pop("generated_at")
        return days

    made = stored()
    for day, got in zip(week, made, strict=True):
        assert got == expected_day(day, users, nodes, bandwidth, payments, audit), day
    node0 = next(iter(nodes))
    assert made[0]["bandwidth"]["by_node"][node0]["hours"] == 20

    # The reports of that data: every part valid Telegram HTML, accepted by the sandbox, showing it
    check_reports(
        panel_runtime, sandbox, week, now, expected_day(week[-1], users, nodes, bandwidth, payments, audit)
    )

    # The raw snapshots older than 48 h are gone now; a second backfill keeps the hours they made
    assert redis_client.zcount(snapshots_key(node0), 0, (now - timedelta(hours=49)).timestamp()) == 0
    second = backfill()
    assert second.returncode == 0, second.stderr
    assert stored() == made

    # TTLs: daily 90 days, hourly 30 days
    assert 89 * 86_400 < redis_client.ttl(daily_key(week[0])) <= 90 * 86_400
    hour_key = hourly_key(node0, midnight(week[0]))
    assert 29 * 86_400 < redis_client.ttl(hour_key) <= 30 * 86_400
    assert json.loads(redis_client.get(hour_key) or "{}")["snapshots"] == 12


def test_backfill_refuses_bad_dates_naming_the_option() -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [WORKER_APP, "analytics", "backfill", *args],
            env=os.environ,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    today = datetime.now(UTC).date()
    bad = run("--from", "2026-13-01", "--to", "2026-12-01")
    assert (
        bad.returncode == 2
        and "'2026-13-01' is not a date (YYYY-MM-DD)" in bad.stderr
        and "--from" in bad.stderr
    )
    unfinished = run("--from", str(today - timedelta(days=1)), "--to", str(today))
    assert unfinished.returncode == 2 and f"{today} has not ended yet" in unfinished.stderr
    backwards = run("--from", "2026-11-05", "--to", "2026-11-01")
    assert backwards.returncode == 2 and "2026-11-01 is before --from 2026-11-05" in backwards.stderr
