"""``send_weekly_report`` (Monday 07:00 UTC): the last full Monday–Sunday week to every admin
(PRD 8.2), as Telegram HTML, with trends against the week before.

Built from the stored aggregates of both weeks (:mod:`actors.reports.aggregates`), the nodes'
health history (:mod:`actors.reports.nodes`) and the live count of paid payments not activated.
Sections: users (new users with a sparkline, active and expired at the week's end, each in % against
the week before), revenue per currency (sparkline, completed payments, by plan), bandwidth (total,
sparkline, days recorded incompletely, top nodes, nodes without traffic), the most troubled nodes
(offline time, downs, changes), and the recommendations of :mod:`actors.reports.rules`. Totals are
over the days that have data; the days that do not are named (a recommendation) and never count
as zero.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import dramatiq
import redis

from actors.reports import QUEUE
from actors.reports.aggregates import Day, Users, load_days, sum_amounts, unactivated_now
from actors.reports.delivery import Report, deliver, finish
from actors.reports.markup import Section, amount, b, change, esc, i, money, size, split
from actors.reports.nodes import Period, node_health
from actors.reports.periods import WEEKDAYS, midnight, report_week, week_label
from actors.reports.rules import WeekFacts, recommendations
from actors.reports.sections import (
    Options,
    counts_line,
    health_lines,
    no_data,
    traffic_by_node,
    traffic_lines,
    trend,
)
from worker_app.days import DayArgument
from worker_app.db import Database
from worker_app.lazy import created_once
from worker_app.runtime import get_runtime


def weekly_report(
    client: redis.Redis, database: Database, monday: date, *, now: float, options: Options
) -> Report:
    """The report of the week starting ``monday``, rendered and split into messages (nothing sent)."""
    days = load_days(client, monday - timedelta(days=7), monday + timedelta(days=6))
    previous, week = days[:7], days[7:]
    start = midnight(monday)
    health = node_health(client, start, start + 7 * 86_400, now=now, history_days=options.history_days)
    facts = week_facts(week, previous, health, unactivated_now(database))
    tripped = recommendations(facts, options.thresholds)
    sections = build_weekly(week, previous, health, [line for _, line in tripped], options)
    details = {
        "missing": {k: [d.isoformat() for d in v] for k, v in facts.missing.items() if v},
        "recommendations": [rule for rule, _ in tripped],
    }
    return Report("weekly", week_label(monday), split(sections), details)


def week_facts(
    week: Sequence[Day], previous: Sequence[Day], health: Period, unactivated: dict[str, int] | None
) -> WeekFacts:
    """What the recommendation rules judge."""
    end, before = _latest_users(week), _latest_users(previous)
    return WeekFacts(
        revenue=sum_amounts([d.revenue for d in week]),
        previous_revenue=sum_amounts([d.revenue for d in previous]),
        revenue_complete=all(d.revenue is not None for d in (*week, *previous)),
        expired=end.by_status.get("EXPIRED", 0) if end else None,
        previous_expired=before.by_status.get("EXPIRED", 0) if before else None,
        nodes=health.nodes,
        unactivated=unactivated,
        missing={
            "analytics": [d.date for d in week if d.stats is None],
            "payments": [d.date for d in week if d.payments is None],
        },
    )


def _latest_users(days: Sequence[Day]) -> Users | None:
    """The users of the last day that has them (the state at the week's end)."""
    return next((d.users for d in reversed(days) if d.users is not None), None)


NO_ADVICE = "none: every rule is within its threshold"


def build_weekly(
    week: Sequence[Day], previous: Sequence[Day], health: Period, advice: list[str], options: Options
) -> list[Section]:
    """The report's sections; ``week`` and ``previous`` are 7 days each, Monday first."""
    monday, before = week[0].date, previous[0].date
    return [
        (
            "📈 " + b("CyberVPN weekly report"),
            f"Week {week_label(monday)}: Mon {monday} – Sun {week[-1].date} (UTC)",
            i(f"compared with {week_label(before)} ({before} – {previous[-1].date})"),
        ),
        _users(week, previous),
        _revenue(week, previous),
        _bandwidth(week, previous, health, options),
        (
            "🖥 " + b("Most troubled nodes"),
            *health_lines(health, options, limit=options.top_nodes, times=False),
        ),
        ("💡 " + b("Recommendations"), *([f"• {line}" for line in advice] or [NO_ADVICE])),
    ]


def _coverage(what: str, week: Sequence[Any], previous: Sequence[Any]) -> list[str]:
    """A note when either week lacks days of ``what`` (the items are that data or ``None``)."""
    here, there = sum(x is not None for x in week), sum(x is not None for x in previous)
    if here == len(week) and there == len(previous):
        return []
    return [i(f"{what}: data for {here}/7 days this week, {there}/7 the week before")]


def _users(week: Sequence[Day], previous: Sequence[Day]) -> Section:
    title = "👥 " + b("Users")
    if all(d.users is None for d in week):
        return title, no_data("no daily stats stored for this week")
    new = [d.users.new if d.users else None for d in week]
    new_before = [d.users.new if d.users else None for d in previous]
    total, total_before = _sum(new), _sum(new_before)
    end, start = _latest_users(week), _latest_users(previous)
    lines = [
        f"New users: {_text(total)} ({change(total, total_before)}; {_text(total_before)} the week before)",
        trend(new, "new users per day, Mon → Sun"),
    ]
    for status, label in (("ACTIVE", "Active"), ("EXPIRED", "Expired")):
        now = end.by_status.get(status, 0) if end else None  # a status nobody has is absent
        then = start.by_status.get(status, 0) if start else None
        lines.append(
            f"{label} at the week's end: {_text(now)} ({change(now, then)}; {_text(then)} a week before)"
        )
    return title, *lines, *_coverage("users", new, new_before)


def _sum(values: Sequence[int | None]) -> int | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def _text(value: int | None) -> str:
    return "no data" if value is None else str(value)


def _revenue(week: Sequence[Day], previous: Sequence[Day]) -> Section:
    title = "💰 " + b("Revenue")
    revenue, revenue_before = [d.revenue for d in week], [d.revenue for d in previous]
    if all(r is None for r in revenue):
        return title, no_data("no payments stats stored for this week")
    total, total_before = sum_amounts(revenue), sum_amounts(revenue_before)
    any_before = any(r is not None for r in revenue_before)
    lines = []
    for currency in sorted(set(total) | set(total_before)):
        now, then = total.get(currency, Decimal(0)), total_before.get(currency, Decimal(0))
        was = f"{amount(then)} the week before" if any_before else "no data the week before"
        compared = change(float(now), float(then) if any_before else None)
        lines.append(f"{esc(currency, 12)}: {amount(now)} ({compared}; {was})")
        lines.append(trend([float(r.get(currency, 0)) if r is not None else None for r in revenue],
                           f"{esc(currency, 12)} per day"))  # fmt: skip
    if not lines:
        lines.append(f"no revenue ({money({})})")
    completed = [d.completed for d in week]
    lines.append(f"Completed payments: {_text(_sum(completed))} "
                 f"({_text(_sum([d.completed for d in previous]))} the week before)")  # fmt: skip
    plans = _plans(week)
    if plans:
        lines.append(counts_line("By plan", plans))
    return title, *lines, *_coverage("revenue", revenue, revenue_before)


def _plans(days: Sequence[Day]) -> dict[str, int]:
    plans: dict[str, int] = {}
    for day in days:
        if day.payments is not None:
            counts = day.payments.count_by_plan
        elif day.stats is not None and day.stats.revenue is not None:
            counts = {p: v.count for p, v in day.stats.revenue.by_plan.items()}
        else:
            continue
        for plan, n in counts.items():
            plans[plan] = plans.get(plan, 0) + n
    return plans


def _bandwidth(week: Sequence[Day], previous: Sequence[Day], health: Period, options: Options) -> Section:
    title = "📶 " + b("Bandwidth")
    daily = [d.bandwidth.total_bytes if d.bandwidth else None for d in week]
    if all(v is None for v in daily):
        return title, no_data("no bandwidth stored for this week")
    before = [d.bandwidth.total_bytes if d.bandwidth else None for d in previous]
    total, total_before = _sum(daily), _sum(before)
    was = size(total_before) if total_before is not None else "no data"
    lines = [
        f"Total: {size(total or 0)} ({change(total, total_before)}; {was} the week before)",
        trend(daily, "per day, Mon → Sun"),
    ]
    partial = [f"{WEEKDAYS[d.date.weekday()]} {d.bandwidth.hours_covered}/24 h"
               for d in week if d.bandwidth is not None and d.bandwidth.hours_covered < 24]  # fmt: skip
    if partial:
        lines.append(f"⚠️ days recorded in part (the rest unknown, not zero): {', '.join(partial)}")
    lines += traffic_lines(traffic_by_node(week), health, options.top_nodes)
    return title, *lines, *_coverage("bandwidth", daily, before)


@created_once
def _recommendations_total() -> Any:
    import prometheus_client as prom

    return prom.Counter(
        "cybervpn_report_recommendations", "Recommendations in weekly reports, by the rule that tripped.",
        ("rule",), registry=None,
    )  # fmt: skip


@dramatiq.actor(queue_name=QUEUE, store_results=True)
def send_weekly_report(day: DayArgument | None = None) -> dict[str, Any]:
    """Send the weekly report of the Monday–Sunday week holding ``day`` (default: the last full week)
    to ADMIN_TELEGRAM_IDS (Monday 07:00 UTC); once per week and admin, however often it runs."""
    runtime = get_runtime()
    started, now = time.monotonic(), datetime.now(UTC)
    monday, _ = report_week(day, today=now.date())
    options = Options.from_settings(runtime.settings)
    report = weekly_report(runtime.redis, runtime.database, monday, now=now.timestamp(), options=options)
    for rule in report.details["recommendations"]:
        _recommendations_total().labels(rule).inc()
    delivered = deliver(runtime.database, report, runtime.settings.admin_telegram_ids)
    return finish("send_weekly_report", report, delivered, started=started)
