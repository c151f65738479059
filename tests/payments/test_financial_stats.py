"""aggregate_financial_stats on PostgreSQL and Redis: each UTC day's completed payments (by the day
they were paid) summed per currency, by plan and provider; payments created that day by status;
paid ones not activated; the key overwritten by every run, so a late activation is counted."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import redis
import sqlalchemy as sa

from actors.payments.financial_stats import aggregate_financial_stats, compute, days_to_aggregate, key
from tests.fixtures.api import WORKER_APP
from worker_app.errors import PermanentError
from worker_app.runtime import Runtime

D = date(2026, 11, 30)


def at(day: date, hh: int = 12, mm: int = 0, ss: float = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hh, mm, tzinfo=UTC) + timedelta(seconds=ss)


def plan(engine: sa.Engine, name: str, days: int = 30) -> uuid.UUID:
    plan_id = uuid.uuid4()
    with engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO subscription_plans (id, name, duration_days, price, currency) "
                    "VALUES (:id, :n, :d, 5, 'USD')"), {"id": plan_id, "n": name, "d": days},
        )  # fmt: skip
    return plan_id


def payment(engine: sa.Engine, *, amount: str, currency: str = "USDT", status: str = "completed",
            created: datetime, paid: datetime | None = None, plan_id: uuid.UUID | None = None,
            provider: str = "cryptobot") -> uuid.UUID:  # fmt: skip
    payment_id = uuid.uuid4()
    with engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO payments (id, user_id, amount, currency, status, created_at, paid_at, "
                    "plan_id, provider, subscription_days) "
                    "VALUES (:id, 1, :a, :c, :s, :created, :paid, :plan, :prov, 30)"),
            {"id": payment_id, "a": Decimal(amount), "c": currency, "s": status, "created": created,
             "paid": paid if paid is not None or status != "completed" else created, "plan": plan_id,
             "prov": provider},
        )  # fmt: skip
    return payment_id


def activation(engine: sa.Engine, payment_id: uuid.UUID, state: str, created: datetime) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO payment_activations (payment_id, user_id, invoice_id, state, days, source, "
                    "created_at) VALUES (:id, 1, :inv, :state, 30, 'webhook', :at)"),
            {"id": payment_id, "inv": str(uuid.uuid4().int % 10**9), "state": state, "at": created},
        )  # fmt: skip


def test_a_day_sums_what_was_paid_in_it_per_currency_plan_and_provider(
    runtime: Runtime, clean_tables: sa.Engine
) -> None:
    db = clean_tables
    monthly, yearly = plan(db, "monthly"), plan(db, "yearly", 365)
    # Paid on D: three USDT (two monthly, one yearly), one TON without a plan, one through another provider
    payment(db, amount="5.00", created=at(D, 0, 0), plan_id=monthly)
    payment(db, amount="5.00", created=at(D - timedelta(days=1), 23, 50), paid=at(D, 0, 0), plan_id=monthly)
    payment(db, amount="50.5", created=at(D, 23, 59, 59.999), plan_id=yearly)
    payment(db, amount="1.25", currency="TON", created=at(D, 10))
    payment(db, amount="3", currency="USD", created=at(D, 11), provider="stars")
    # Not on D: paid just before and just after it, and not paid at all
    payment(db, amount="7", created=at(D - timedelta(days=1), 23, 59, 59.999))
    payment(db, amount="7", created=at(D, 23), paid=at(D + timedelta(days=1), 0, 0))
    payment(db, amount="9", status="pending", created=at(D, 8))
    payment(db, amount="9", status="failed", created=at(D, 9))
    paid_not_activated = payment(db, amount="5", status="pending", created=at(D, 13))
    activation(db, paid_not_activated, "activating", at(D, 13, 1))
    mismatched = payment(db, amount="5", status="pending", created=at(D, 14))
    activation(db, mismatched, "review", at(D, 14, 1))

    [day] = compute(runtime.database, D, D, now=at(D + timedelta(days=1), 0, 30))
    assert day == {
        "date": "2026-11-30",
        "completed": 5,
        "total_revenue": {"TON": "1.25", "USD": "3", "USDT": "60.5"},
        "avg_amount": {"TON": "1.25", "USD": "3", "USDT": "20.16666667"},
        "count_by_plan": {"monthly": 2, "none": 2, "yearly": 1},
        "revenue_by_plan": {
            "monthly": {"USDT": "10"},
            "none": {"TON": "1.25", "USD": "3"},
            "yearly": {"USDT": "50.5"},
        },
        "count_by_provider": {"cryptobot": 4, "stars": 1},
        "revenue_by_provider": {"cryptobot": {"TON": "1.25", "USDT": "60.5"}, "stars": {"USD": "3"}},
        "created_by_status": {"completed": 5, "failed": 1, "pending": 3},
        "unactivated": {"activating": 1, "review": 1},
        "generated_at": "2026-12-01T00:30:00+00:00",
    }


def test_every_day_of_a_span_gets_a_summary_and_an_empty_one_has_zeros(
    runtime: Runtime, clean_tables: sa.Engine
) -> None:
    payment(clean_tables, amount="5", created=at(D))
    days = compute(runtime.database, D - timedelta(days=2), D, now=at(D + timedelta(days=1)))
    assert [(d["date"], d["completed"], d["total_revenue"]) for d in days] == [
        ("2026-11-28", 0, {}),
        ("2026-11-29", 0, {}),
        ("2026-11-30", 1, {"USDT": "5"}),
    ]
    assert days[0]["avg_amount"] == {} and days[0]["created_by_status"] == {}


def test_the_actor_writes_the_recent_days_and_a_late_activation_is_counted_by_the_next_run(
    runtime: Runtime, clean_tables: sa.Engine, redis_client: redis.Redis
) -> None:
    today = datetime.now(UTC).date()
    yesterday = today - timedelta(days=1)
    payment(clean_tables, amount="5", created=at(yesterday, 10))
    late = payment(clean_tables, amount="8", status="pending", created=at(yesterday, 23, 59))

    result = aggregate_financial_stats()
    assert result["days"] == [(today - timedelta(days=n)).isoformat() for n in (3, 2, 1)]
    stored = json.loads(redis_client.get(key(yesterday)) or "{}")
    assert stored["completed"] == 1 and stored["total_revenue"] == {"USDT": "5"}
    assert json.loads(redis_client.get(key(today - timedelta(days=3))) or "{}")["completed"] == 0
    assert redis_client.get(key(today - timedelta(days=4))) is None
    assert redis_client.get(key(today)) is None
    ttl = redis_client.ttl(key(yesterday))
    assert 89 * 86_400 < ttl <= 90 * 86_400

    # The late payment is paid at 23:59:30 yesterday and completed after the run
    with clean_tables.begin() as conn:
        conn.execute(sa.text("UPDATE payments SET status = 'completed', paid_at = :at WHERE id = :id"),
                     {"at": at(yesterday, 23, 59, 30), "id": late})  # fmt: skip
    aggregate_financial_stats()
    stored = json.loads(redis_client.get(key(yesterday)) or "{}")
    assert stored["completed"] == 2 and stored["total_revenue"] == {"USDT": "13"}

    # One day by hand, further back than the recent ones
    assert aggregate_financial_stats((today - timedelta(days=10)).isoformat())["days"] == [
        (today - timedelta(days=10)).isoformat()
    ]
    assert redis_client.exists(key(today - timedelta(days=10)))


def test_a_bad_or_unfinished_day_is_refused_naming_it() -> None:
    today = date(2026, 12, 7)
    assert days_to_aggregate(None, today=today, recent=3) == (date(2026, 12, 4), date(2026, 12, 6))
    assert days_to_aggregate("2026-12-06", today=today, recent=3) == (date(2026, 12, 6), date(2026, 12, 6))
    with pytest.raises(PermanentError, match="day '2026-13-01' is not a date"):
        days_to_aggregate("2026-13-01", today=today, recent=3)
    with pytest.raises(PermanentError, match=r"day 2026-12-07 has not ended yet \(today is 2026-12-07 UTC\)"):
        days_to_aggregate("2026-12-07", today=today, recent=3)


def test_worker_app_payments_stats_prints_computes_and_stores(
    runtime: Runtime, clean_tables: sa.Engine, redis_client: redis.Redis
) -> None:
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    monthly = plan(clean_tables, "monthly")
    payment(clean_tables, amount="5", created=at(yesterday), plan_id=monthly)
    payment(clean_tables, amount="7", created=at(yesterday, 13), plan_id=monthly)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([WORKER_APP, "payments", "stats", *args], env=os.environ, capture_output=True,
                              text=True, check=False, timeout=60)  # fmt: skip

    shown = cli()
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines()[:2] == [
        f"{yesterday}  completed 2: 12 USDT (avg 6)",
        "  by plan: monthly 2",
    ]
    assert redis_client.get(key(yesterday)) is None  # printing alone stores nothing
    two = cli("--days", "2", "--json")
    days: list[dict[str, Any]] = [json.loads(line) for line in two.stdout.splitlines()]
    assert [(d["date"], d["completed"]) for d in days] == [
        (str(yesterday - timedelta(days=1)), 0),
        (str(yesterday), 2),
    ]
    stored = cli("--date", str(yesterday), "--store")
    assert stored.returncode == 0 and "stored 1 day(s)" in stored.stderr
    assert json.loads(redis_client.get(key(yesterday)) or "{}")["total_revenue"] == {"USDT": "12"}
    bad = cli("--date", "yesterday")
    assert bad.returncode == 2 and "day 'yesterday' is not a date (YYYY-MM-DD)" in bad.stderr
