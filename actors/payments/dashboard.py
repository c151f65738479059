"""The payments domain's dashboard page and overview tile (registered in :mod:`actors.payments`).

* ``GET /payments`` (refreshes every 10 s) — pending payments (how many, the oldest, how many have
  no invoice yet), payments completed today (00:00 UTC on, by ``paid_at``: count and sum per
  currency, never added across currencies), payments created today by status, and the paid payments
  that are not subscription time: **needing review** (``payment_activations.state = 'review'``: the
  invoice did not match the payment, or the panel refused it for good — never activated until an
  admin settles it) and **unactivated** (``activating``: paid, its new expiry stored, the panel not
  confirmed yet — retries and the poller finish it), oldest first, as ``worker-app payments
  unactivated`` lists them;
* tile ``payments`` — red while anything needs review, or has been unactivated for over
  ``UNACTIVATED_TROUBLE_S`` (every payment is activating for a moment on its way).

Pending counts payments awaiting payment only: a payment in review keeps the backend's ``pending``
status, and is counted under review instead. Every figure is one indexed query: ``ix_payments_status``
(pending), ``ix_payments_completed_paid_at`` (completed today), ``ix_payments_created_at`` (created
today), ``ix_payment_activations_open`` (review and unactivated, partial on ``state <> 'completed'``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from flask import Blueprint
from sqlalchemy import text
from sqlalchemy.orm import Session

from actors.payments.activation import ACTIVATING, REVIEW
from actors.payments.texts import amount_text
from actors.reports.markup import money
from worker_app.days import day_start
from worker_app.runtime import Runtime
from worker_app.web.dashboard import page
from worker_app.web.moments import ago
from worker_app.web.overview import Tile

#: The most review and unactivated payments the page lists (the counts are complete).
PAGE_ROWS = 100
UNACTIVATED_TROUBLE_S = 300
"""Every payment is ``activating`` for a moment on its way to completed: the tile turns red only for
one still activating after this long."""

_PENDING = text(
    """
    SELECT count(*) AS n, min(created_at) AS oldest, count(*) FILTER (WHERE external_id IS NULL) AS no_invoice
    FROM payments p
    WHERE status = 'pending' AND NOT EXISTS (SELECT 1 FROM payment_activations a WHERE a.payment_id = p.id)
    """
)
_COMPLETED = text(
    """
    SELECT currency, count(*) AS n, sum(amount) AS total FROM payments
    WHERE status = 'completed' AND paid_at >= :start
    GROUP BY currency ORDER BY currency
    """
)
_CREATED = text("SELECT status, count(*) AS n FROM payments WHERE created_at >= :start GROUP BY status")
_OPEN_COUNTS = text(
    "SELECT state, count(*) AS n, count(*) FILTER (WHERE created_at < :stale) AS stale "
    "FROM payment_activations WHERE state <> 'completed' GROUP BY state"
)
_OPEN_ROWS = text(
    """
    SELECT a.payment_id, a.user_id, a.invoice_id, a.state, a.source, a.reason, a.attempts, a.created_at,
           a.new_expire_at, p.amount, p.currency
    FROM payment_activations a JOIN payments p ON p.id = a.payment_id
    WHERE a.state <> 'completed' AND a.state = :state
    ORDER BY a.created_at
    LIMIT :limit
    """
)


@dataclass
class Figures:
    """The payments as the page and the tile show them."""

    start: datetime
    pending: int = 0
    oldest_pending: datetime | None = None
    pending_no_invoice: int = 0
    completed: dict[str, tuple[int, Decimal]] = field(default_factory=dict)
    """Currency → (payments, sum) completed today."""
    created: dict[str, int] = field(default_factory=dict)
    open_counts: dict[str, int] = field(default_factory=dict)
    """``review`` / ``activating`` → payments."""
    open_rows: dict[str, list[Any]] = field(default_factory=dict)
    """``review`` / ``activating`` → the oldest of them (when asked for)."""
    open_stale: dict[str, int] = field(default_factory=dict)
    """``review`` / ``activating`` → those opened over ``UNACTIVATED_TROUBLE_S`` ago."""

    @property
    def review(self) -> int:
        return self.open_counts.get(REVIEW, 0)

    @property
    def unactivated(self) -> int:
        return self.open_counts.get(ACTIVATING, 0)

    @property
    def completed_count(self) -> int:
        return sum(n for n, _ in self.completed.values())

    @property
    def revenue(self) -> str:
        """``12.5 USDT, 3 TON`` (``0`` for none)."""
        return money({currency: total for currency, (_, total) in self.completed.items()})


def figures(runtime: Runtime, now: float, *, rows: int = 0) -> Figures:
    """Today's figures (UTC day of ``now``) and, with ``rows``, the oldest ``rows`` payments needing
    review and as many unactivated."""
    found = Figures(day_start(now))
    with runtime.database.transaction() as s:
        _read(s, found)
        for state in (REVIEW, ACTIVATING) if rows else ():
            found.open_rows[state] = list(s.execute(_OPEN_ROWS, {"state": state, "limit": rows}))
    return found


def _read(s: Session, found: Figures) -> None:
    pending = s.execute(_PENDING).one()
    found.pending, found.oldest_pending, found.pending_no_invoice = pending  # (n, oldest, no_invoice)
    bounds = {"start": found.start}
    found.completed = {r.currency: (int(r.n), Decimal(r.total)) for r in s.execute(_COMPLETED, bounds)}
    found.created = {r.status: int(r.n) for r in s.execute(_CREATED, bounds)}
    stale = datetime.fromtimestamp(time.time() - UNACTIVATED_TROUBLE_S, UTC)
    opened = list(s.execute(_OPEN_COUNTS, {"stale": stale}))
    found.open_counts = {r.state: int(r.n) for r in opened}
    found.open_stale = {r.state: int(r.stale) for r in opened}


def add_pages(runtime: Runtime) -> tuple[Blueprint, list[tuple[str, str]]]:
    """``GET /payments`` (see the module docstring)."""
    pages = Blueprint("payments", __name__, template_folder="dashboard_templates")

    @pages.get("/payments")
    def payments() -> str:
        found = figures(runtime, time.time(), rows=PAGE_ROWS)
        return page("payments/payments.html", "Payments", refresh=10, f=found, review=found.open_rows[REVIEW],
                    unactivated=found.open_rows[ACTIVATING], amount=amount_text)  # fmt: skip

    return pages, [("Payments", ".payments")]


def tiles(runtime: Runtime) -> list[Tile]:
    """The overview's ``payments`` tile."""
    return [_tile(runtime)]


def _tile(runtime: Runtime) -> Tile:
    now = time.time()
    found = figures(runtime, now)
    oldest = f", oldest {ago(now - found.oldest_pending.timestamp())}" if found.oldest_pending else ""
    detail = f"{found.pending} pending{oldest}; today {found.revenue}"
    if found.review or found.unactivated:
        value = f"{found.review} in review, {found.unactivated} unactivated"
        trouble = bool(found.review or found.open_stale.get(ACTIVATING))
    else:
        value, trouble = f"{found.completed_count} completed today", False
    return Tile("payments", "Payments", value, trouble, "/payments", detail)
