"""The stored aggregates the reports are built from (never recomputed at report time):

* ``cybervpn:stats:daily:{date}`` — users, bandwidth, revenue and admin operations of a UTC day,
  written by the analytics domain (``aggregate_daily_stats``);
* ``cybervpn:stats:payments:{date}`` — the day's payments, written by ``aggregate_financial_stats``
  (:mod:`actors.payments.financial_stats`).

The one thing read live is :func:`unactivated_now` — paid payments not activated *now*, from
``payment_activations`` (one grouped count): what an admin should act on today, which a day's
stored count (taken when that day was aggregated) cannot say.

A key that is absent, or whose JSON does not fit its shape, is a day *without data* (``None``; one
warning names a malformed key): a report shows it as missing, never as zero. Amounts are
:class:`~decimal.Decimal` per currency; currencies are never added together.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

import redis
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import text

from actors.analytics.daily import daily_key
from actors.payments.financial_stats import key as payments_key
from worker_app.db import Database

log = logging.getLogger(__name__)
_UNACTIVATED = text(
    "SELECT state, count(*) AS n FROM payment_activations WHERE state <> 'completed' GROUP BY 1"
)
M = TypeVar("M", bound=BaseModel)


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class TopUser(_Model):
    id: int | str | None = None
    username: str = ""
    used_traffic_bytes: int = 0


class Users(_Model):
    total: int | None = None
    by_status: dict[str, int] = Field(default_factory=dict)
    new: int | None = None
    top_traffic: list[TopUser] = Field(default_factory=list)


class NodeBytes(_Model):
    name: str = ""
    bytes: int = 0


class Bandwidth(_Model):
    total_bytes: int | None = None
    hours_covered: int = Field(default=24, ge=0, le=24)
    by_node: dict[str, NodeBytes] = Field(default_factory=dict)


class PlanRevenue(_Model):
    count: int = 0
    amount: dict[str, Decimal] = Field(default_factory=dict)


class Revenue(_Model):
    completed: int = 0
    total: dict[str, Decimal] = Field(default_factory=dict)
    by_plan: dict[str, PlanRevenue] = Field(default_factory=dict)


class AdminOperations(_Model):
    total: int = 0
    by_type: dict[str, int] = Field(default_factory=dict)


class DailyStats(_Model):
    """``cybervpn:stats:daily:{date}``; a section the analytics run could not fill is ``None``."""

    date: dt.date
    users: Users | None = None
    bandwidth: Bandwidth | None = None
    revenue: Revenue | None = None
    admin_operations: AdminOperations | None = None
    generated_at: str | None = None


class PaymentStats(_Model):
    """``cybervpn:stats:payments:{date}`` (see :mod:`actors.payments.financial_stats`)."""

    date: dt.date
    completed: int = 0
    total_revenue: dict[str, Decimal] = Field(default_factory=dict)
    avg_amount: dict[str, Decimal] = Field(default_factory=dict)
    count_by_plan: dict[str, int] = Field(default_factory=dict)
    count_by_provider: dict[str, int] = Field(default_factory=dict)
    revenue_by_provider: dict[str, dict[str, Decimal]] = Field(default_factory=dict)
    created_by_status: dict[str, int] = Field(default_factory=dict)
    unactivated: dict[str, int] = Field(default_factory=dict)
    generated_at: str | None = None


@dataclass(frozen=True)
class Day:
    """What is stored for one UTC day (``None``: nothing usable is)."""

    date: dt.date
    stats: DailyStats | None
    payments: PaymentStats | None

    @property
    def revenue(self) -> dict[str, Decimal] | None:
        """Money completed that day per currency: the payments stats, else the analytics' own."""
        if self.payments is not None:
            return dict(self.payments.total_revenue)
        if self.stats is not None and self.stats.revenue is not None:
            return dict(self.stats.revenue.total)
        return None

    @property
    def completed(self) -> int | None:
        if self.payments is not None:
            return self.payments.completed
        if self.stats is not None and self.stats.revenue is not None:
            return self.stats.revenue.completed
        return None

    @property
    def users(self) -> Users | None:
        return self.stats.users if self.stats is not None else None

    @property
    def bandwidth(self) -> Bandwidth | None:
        return self.stats.bandwidth if self.stats is not None else None


def days_between(first: dt.date, last: dt.date) -> list[dt.date]:
    return [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]


def load_days(client: redis.Redis, first: dt.date, last: dt.date) -> list[Day]:
    """Every day from ``first`` to ``last`` (inclusive), oldest first, in one round trip."""
    days = days_between(first, last)
    raw: list[Any] = client.mget([daily_key(d) for d in days] + [payments_key(d) for d in days])
    stats, payments = raw[: len(days)], raw[len(days) :]
    return [
        Day(d, _parse(DailyStats, daily_key(d), s), _parse(PaymentStats, payments_key(d), p))
        for d, s, p in zip(days, stats, payments, strict=True)
    ]


def _parse(model: type[M], name: str, raw: str | None) -> M | None:
    if raw is None:
        return None
    try:
        return model.model_validate(json.loads(raw))
    except (ValueError, ValidationError) as e:
        log.warning("report: %s is not a valid %s, shown as missing: %s", name, model.__name__,
                    str(e).splitlines()[0])  # fmt: skip
        return None


def sum_amounts(amounts: Sequence[dict[str, Decimal] | None]) -> dict[str, Decimal]:
    """Per-currency sums of the days that have data."""
    total: dict[str, Decimal] = {}
    for by_currency in amounts:
        for currency, value in (by_currency or {}).items():
            total[currency] = total.get(currency, Decimal(0)) + value
    return total


def unactivated_now(database: Database) -> dict[str, int]:
    """Paid payments not activated now, by activation state (``activating``, ``review``)."""
    with database.transaction() as s:
        return {str(r.state): int(r.n) for r in s.execute(_UNACTIVATED)}
