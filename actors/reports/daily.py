"""``send_daily_report`` (06:00 UTC): yesterday's summary to every admin (PRD 8.1), as Telegram HTML.

Built from the stored aggregates of the day (:mod:`actors.reports.aggregates`) and the six before it
(for the day-before changes and the 7-day sparklines), the nodes' health history of the day
(:mod:`actors.reports.nodes`), the admin alerts last seen that day, and the live count of paid
payments not activated. Sections: users (new, by status with the change since the day before,
churn, top traffic), revenue (by plan and provider, payments created, paid but not activated),
nodes (uptime, incidents with their times), bandwidth (total, hours recorded, top nodes, nodes
without traffic), the last 7 days as sparklines, alerts, admin operations.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import dramatiq
import redis

from actors.analytics.daily import daily_key
from actors.reports import QUEUE
from actors.reports.aggregates import Day, Users, load_days, sum_amounts, unactivated_now
from actors.reports.delivery import Report, deliver, finish
from actors.reports.markup import Section, b, code, esc, i, money, size, split
from actors.reports.nodes import Period, node_health
from actors.reports.periods import WEEKDAYS, midnight, report_day
from actors.reports.sections import (
    Options,
    counts_line,
    health_lines,
    no_data,
    traffic_by_node,
    traffic_lines,
    trend,
)
from worker_app.alerts import recent_alerts
from worker_app.days import DayArgument
from worker_app.db import Database
from worker_app.runtime import get_runtime

STATUSES = ("ACTIVE", "EXPIRED", "DISABLED", "LIMITED")
MAX_NODES = 10
MAX_ALERTS = 5
_ALERTS_SCANNED = 100_000


def daily_report(
    client: redis.Redis, database: Database, day: date, *, now: float, options: Options
) -> Report:
    """The report of ``day``, rendered and split into messages (nothing is sent)."""
    days = load_days(client, day - timedelta(days=6), day)
    start = midnight(day)
    health = node_health(client, start, start + 86_400, now=now, history_days=options.history_days)
    alerts = day_alerts(client, start, start + 86_400)
    sections = build_daily(days, health, alerts, unactivated_now(database), options)
    missing = {"analytics": days[-1].stats is None, "payments": days[-1].payments is None}
    return Report(
        "daily", day.isoformat(), split(sections), {"missing": [k for k, v in missing.items() if v]}
    )


def day_alerts(client: redis.Redis, start: float, end: float) -> list[dict[str, Any]]:
    """The admin alerts last raised within ``[start, end)``, the most frequent first."""
    found = recent_alerts(client, _ALERTS_SCANNED, since=start, until=end)
    return sorted(found, key=lambda a: (-a["count"], -a["last_at"]))


def build_daily(
    days: Sequence[Day], health: Period, alerts: list[dict[str, Any]], unactivated: dict[str, int] | None,
    options: Options,
) -> list[Section]:  # fmt: skip
    """The report's sections; ``days`` ends with the report's day (up to 7 days)."""
    today = days[-1]
    before = days[-2] if len(days) > 1 else None
    return [
        ("📊 " + b("CyberVPN daily report"), f"{WEEKDAYS[today.date.weekday()]} {today.date} (UTC)"),
        _users(today, before),
        _revenue(today, unactivated),
        ("🖥 " + b("Nodes"), *health_lines(health, options, limit=MAX_NODES, times=True)),
        _bandwidth(today, health, options),
        _trends(days),
        _alerts(alerts),
        _admin_operations(today),
    ]


def _missing(day: Day) -> str:
    return no_data(f"{daily_key(day.date)} is missing")


def _users(day: Day, before: Day | None) -> Section:
    title = "👥 " + b("Users")
    users = day.users
    if users is None:
        return title, _missing(day)
    previous = before.users if before is not None else None
    lines = [f"New: {_count(users.new)} · total: {_count(users.total)}", _statuses(users, previous)]
    if previous is None:
        lines.append(i("no data for the day before: changes not shown"))
    else:
        lines.append(_churn(users, previous))
    if users.top_traffic:
        lines.append("Top traffic:")
        lines += [f"{n}. {code(esc(u.username or u.id))} — {size(u.used_traffic_bytes)}"
                  for n, u in enumerate(users.top_traffic[:5], 1)]  # fmt: skip
    return title, *lines


def _count(value: int | None) -> str:
    return "unknown" if value is None else str(value)


def _delta(value: int, before: int | None) -> str:
    if before is None:
        return ""
    return f" ({value - before:+d})" if value != before else " (±0)"


def _statuses(users: Users, previous: Users | None) -> str:
    """Every status with its count (a status nobody has is absent from the stats: 0), and its change."""
    names = [*STATUSES, *sorted(set(users.by_status) - set(STATUSES))]
    now = {s: users.by_status.get(s, 0) for s in names}
    before = {s: previous.by_status.get(s, 0) for s in names} if previous is not None else {}
    return ", ".join(f"{esc(s.lower(), 16)} {now[s]}{_delta(now[s], before.get(s))}" for s in names)


def _churn(users: Users, previous: Users) -> str:
    def lapsed(u: Users) -> int:
        return u.by_status.get("EXPIRED", 0) + u.by_status.get("DISABLED", 0)

    change = lapsed(users) - lapsed(previous)
    return f"Churn: {change:+d} expired or disabled since the day before" if change else "Churn: ±0"


def _revenue(day: Day, unactivated: dict[str, int] | None) -> Section:
    title = "💰 " + b("Revenue")
    lines: list[str] = []
    p = day.payments
    if p is not None:
        avg = money(p.avg_amount) if p.avg_amount else ""
        lines.append(
            f"Completed: {p.completed} · {money(p.total_revenue)}" + (f" (avg {avg})" if avg else "")
            if p.completed
            else "Completed: none"
        )
        lines += _counts("By plan", p.count_by_plan) + _provider_lines(
            p.revenue_by_provider, p.count_by_provider
        )
        lines += _counts("Created", p.created_by_status)
        lines += _counts("⚠️ Paid that day, not activated", p.unactivated)
    elif day.stats is not None and day.stats.revenue is not None:
        r = day.stats.revenue
        lines.append(f"Completed: {r.completed} · {money(r.total)}" if r.completed else "Completed: none")
        lines += [f"• {esc(plan)}: {v.count} · {money(v.amount)}" for plan, v in sorted(r.by_plan.items())]
        lines.append(i(f"cybervpn:stats:payments:{day.date} is missing: no providers, from the daily stats"))
    else:
        lines.append(no_data(f"no payments stats stored for {day.date}"))
    if unactivated:
        lines += _counts("⚠️ Paid, not activated now", unactivated)
        lines.append(f"  see {code('worker-app payments unactivated')}")
    return title, *lines


def _counts(label: str, counts: dict[str, int]) -> list[str]:
    return [counts_line(label, counts)] if counts else []


def _provider_lines(revenue: dict[str, Any], counts: dict[str, int]) -> list[str]:
    return [
        f"• {esc(name)}: {counts.get(name, 0)} · {money(revenue.get(name, {}))}" for name in sorted(counts)
    ]


def _bandwidth(day: Day, health: Period, options: Options) -> Section:
    title = "📶 " + b("Bandwidth")
    bandwidth = day.bandwidth
    if bandwidth is None:
        return title, _missing(day)
    total = "unknown" if bandwidth.total_bytes is None else size(bandwidth.total_bytes)
    lines = [f"Total: {total}"]
    if bandwidth.hours_covered < 24:
        lines.append(f"⚠️ only {bandwidth.hours_covered} of 24 hours recorded: the rest of the day's traffic "
                     "is unknown, not zero")  # fmt: skip
    return title, *lines, *traffic_lines(traffic_by_node([day]), health, options.top_nodes)


def _trends(days: Sequence[Day]) -> Section:
    first, last = days[0].date, days[-1].date
    title = "📈 " + b("Last 7 days") + f" ({WEEKDAYS[first.weekday()]} → {WEEKDAYS[last.weekday()]})"
    new = [d.users.new if d.users is not None else None for d in days]
    lines = [trend(new, "new users")]
    revenue = [d.revenue for d in days]
    totals = sum_amounts(revenue)
    for currency in sorted(totals, key=lambda c: -totals[c])[:3]:
        values = [float(r.get(currency, 0)) if r is not None else None for r in revenue]
        lines.append(trend(values, f"revenue, {esc(currency, 12)}"))
    if not totals:
        lines.append(trend([0.0 if r is not None else None for r in revenue], "revenue"))
    lines.append(trend([d.bandwidth.total_bytes if d.bandwidth else None for d in days], "bandwidth"))
    if any(v is None for v in new) or any(r is None for r in revenue):
        lines.append(i("· = no data for that day"))
    return title, *lines


def _alerts(alerts: list[dict[str, Any]]) -> Section:
    title = "🚨 " + b("Alerts")
    if not alerts:
        return title, "none raised this day"
    lines = [f"• [{esc(str(a['severity']).upper(), 10)}] {esc(a['title'] or a['fingerprint'], 100)} "
             f"— ×{a['count']} since {datetime.fromtimestamp(a['first_at'], UTC):%m-%d %H:%M}"
             for a in alerts[:MAX_ALERTS]]  # fmt: skip
    if len(alerts) > MAX_ALERTS:
        lines.append(i(f"and {len(alerts) - MAX_ALERTS} more: worker-app alerts --recent"))
    return title, *lines


def _admin_operations(day: Day) -> Section:
    title = "🛠 " + b("Admin operations")
    ops = day.stats.admin_operations if day.stats is not None else None
    if ops is None:
        return title, _missing(day)
    lines = [f"• {esc(kind)}: {n}" for kind, n in sorted(ops.by_type.items(), key=lambda kv: (-kv[1], kv[0]))]
    return title, f"Total: {ops.total}", *lines


@dramatiq.actor(queue_name=QUEUE, store_results=True)
def send_daily_report(day: DayArgument | None = None) -> dict[str, Any]:
    """Send the daily report of ``day`` (default: yesterday, UTC) to ADMIN_TELEGRAM_IDS (06:00 UTC);
    once per day and admin, however often it runs."""
    runtime = get_runtime()
    started, now = time.monotonic(), datetime.now(UTC)
    report_date = report_day(day, today=now.date())
    options = Options.from_settings(runtime.settings)
    report = daily_report(runtime.redis, runtime.database, report_date, now=now.timestamp(), options=options)
    delivered = deliver(runtime.database, report, runtime.settings.admin_telegram_ids)
    return finish("send_daily_report", report, delivered, started=started)
