"""``aggregate_financial_stats`` (00:30 UTC): each UTC day's payments, summed into
``cybervpn:stats:payments:{YYYY-MM-DD}`` for the daily report and the admin SPA.

What a day holds (a JSON object; amounts are decimal strings, one entry per currency — a USDT and a
TON payment are never added together):

* ``completed``, ``total_revenue``, ``avg_amount``, ``count_by_plan`` (plan name, ``none`` for a
  payment without a plan), ``revenue_by_plan``, ``count_by_provider``, ``revenue_by_provider`` —
  payments **completed**
  whose ``paid_at`` falls in the day: money received and turned into subscription time;
* ``created_by_status`` — payments created that day, by their status now (``pending``,
  ``completed``, ``failed``, ``expired``);
* ``unactivated`` — activations begun that day and not completed now, by state (``activating``:
  paid, waiting for the panel; ``review``: the invoice did not match) — money received that is not
  in ``total_revenue``;
* ``date``, ``generated_at``.

PostgreSQL is the truth and the key a summary of it, so a run recomputes and overwrites: every run
writes the ``PAYMENTS_STATS_DAYS`` (3) days before today, so a payment paid at 23:59 and activated
after the run (a lost webhook, the panel down) is counted by the next one, and a night the scheduler
missed is filled in. A day can be recomputed by hand: ``aggregate_financial_stats.send("2026-12-01")``
or ``worker-app payments stats --date 2026-12-01 --store``. Keys live ``PAYMENTS_STATS_TTL_DAYS`` (90).
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import dramatiq
import redis
from sqlalchemy import text

from actors.payments import QUEUE
from actors.payments.texts import amount_text
from worker_app.days import DayArgument, finished_day, midnight, store_days
from worker_app.db import Database
from worker_app.runtime import get_runtime

log = logging.getLogger(__name__)

KEY = "cybervpn:stats:payments:{date}"

_COMPLETED = text(
    """
    SELECT (p.paid_at AT TIME ZONE 'UTC')::date AS day, p.provider, p.currency,
           COALESCE(sp.name, 'none') AS plan, count(*) AS n, sum(p.amount) AS total
    FROM payments p LEFT JOIN subscription_plans sp ON sp.id = p.plan_id
    WHERE p.status = 'completed' AND p.paid_at >= :start AND p.paid_at < :end
    GROUP BY 1, 2, 3, 4
    """
)
_CREATED = text(
    """
    SELECT (created_at AT TIME ZONE 'UTC')::date AS day, status, count(*) AS n FROM payments
    WHERE created_at >= :start AND created_at < :end GROUP BY 1, 2
    """
)
_UNACTIVATED = text(
    """
    SELECT (created_at AT TIME ZONE 'UTC')::date AS day, state, count(*) AS n FROM payment_activations
    WHERE state <> 'completed' AND created_at >= :start AND created_at < :end GROUP BY 1, 2
    """
)


#: Averages are rounded to the amounts' own scale (``payments.amount`` is NUMERIC(24, 8)).
_SCALE = Decimal("0.00000001")


def key(day: date) -> str:
    return KEY.format(date=day.isoformat())


class _Day:
    def __init__(self, day: date) -> None:
        self.day = day
        self.completed = 0
        self.revenue: defaultdict[str, Decimal] = defaultdict(Decimal)
        self.count_by_currency: Counter[str] = Counter()
        self.by_plan: Counter[str] = Counter()
        self.revenue_by_plan: defaultdict[str, defaultdict[str, Decimal]] = defaultdict(
            lambda: defaultdict(Decimal)
        )
        self.by_provider: Counter[str] = Counter()
        self.revenue_by_provider: defaultdict[str, defaultdict[str, Decimal]] = defaultdict(
            lambda: defaultdict(Decimal)
        )
        self.created: Counter[str] = Counter()
        self.unactivated: Counter[str] = Counter()

    def average(self, currency: str) -> str:
        return amount_text((self.revenue[currency] / self.count_by_currency[currency]).quantize(_SCALE))

    def summary(self, now: datetime) -> dict[str, Any]:
        def amounts(by_currency: dict[str, Decimal]) -> dict[str, str]:
            return {c: amount_text(v) for c, v in sorted(by_currency.items())}

        return {
            "date": self.day.isoformat(),
            "completed": self.completed,
            "total_revenue": amounts(self.revenue),
            "avg_amount": {c: self.average(c) for c in sorted(self.count_by_currency)},
            "count_by_plan": dict(sorted(self.by_plan.items())),
            "revenue_by_plan": {p: amounts(r) for p, r in sorted(self.revenue_by_plan.items())},
            "count_by_provider": dict(sorted(self.by_provider.items())),
            "revenue_by_provider": {p: amounts(r) for p, r in sorted(self.revenue_by_provider.items())},
            "created_by_status": dict(sorted(self.created.items())),
            "unactivated": dict(sorted(self.unactivated.items())),
            "generated_at": now.isoformat(),
        }


def compute(database: Database, first: date, last: date, *, now: datetime) -> list[dict[str, Any]]:
    """The stats of every day from ``first`` to ``last`` (inclusive), one summary each, oldest first;
    a day without payments gets zeros, not a gap. Three grouped queries, whatever the span."""
    span = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    days = {day: _Day(day) for day in span}
    bounds = {"start": midnight(first), "end": midnight(last + timedelta(days=1))}
    with database.transaction() as s:
        completed = list(s.execute(_COMPLETED, bounds))
        created = list(s.execute(_CREATED, bounds))
        unactivated = list(s.execute(_UNACTIVATED, bounds))
    for r in completed:
        d = days[r.day]
        d.completed += r.n
        d.revenue[r.currency] += r.total
        d.count_by_currency[r.currency] += r.n
        d.by_plan[r.plan] += r.n
        d.revenue_by_plan[r.plan][r.currency] += r.total
        d.by_provider[r.provider] += r.n
        d.revenue_by_provider[r.provider][r.currency] += r.total
    for r in created:
        days[r.day].created[r.status] += r.n
    for r in unactivated:
        days[r.day].unactivated[r.state] += r.n
    return [d.summary(now) for d in days.values()]


def store(client: redis.Redis, summaries: list[dict[str, Any]], *, ttl: timedelta) -> None:
    """Write each day's summary to its key (overwriting), with ``ttl``, in one round trip."""
    store_days(client, key, summaries, ttl=ttl)


def days_to_aggregate(requested: str | None, *, today: date, recent: int) -> tuple[date, date]:
    """``requested`` (``YYYY-MM-DD``, a day that has ended) alone, else the ``recent`` days before
    ``today``. A bad date is a :class:`PermanentError` naming it."""
    if requested is None:
        return today - timedelta(days=recent), today - timedelta(days=1)
    day = finished_day(requested, today=today, name="day ")
    return day, day


@dramatiq.actor(queue_name=QUEUE, store_results=True)
def aggregate_financial_stats(
    day: DayArgument | None = None,
) -> dict[str, Any]:
    """Sum the payments of the last ``PAYMENTS_STATS_DAYS`` UTC days (or of ``day`` alone) into
    ``cybervpn:stats:payments:{date}`` (00:30 UTC)."""
    runtime = get_runtime()
    settings = runtime.settings
    now = datetime.now(UTC)
    first, last = days_to_aggregate(day, today=now.date(), recent=settings.payments_stats_days)
    summaries = compute(runtime.database, first, last, now=now)
    store(runtime.redis, summaries, ttl=timedelta(days=settings.payments_stats_ttl_days))
    newest = summaries[-1]
    summary = {
        "job": "aggregate_financial_stats", "days": [s["date"] for s in summaries],
        "completed": newest["completed"], "total_revenue": newest["total_revenue"],
    }  # fmt: skip
    log.info("payments job done: aggregate_financial_stats %s..%s, %s completed on %s",
             first, last, newest["completed"], last, extra=summary)  # fmt: skip
    return summary
