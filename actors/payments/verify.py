"""``verify_pending_payments`` (every 5 min): the poller that catches what a lost webhook missed.

Pending Crypto Pay payments with an invoice (``external_id``) created within
``PAYMENTS_PENDING_MAX_AGE_H`` (24 h) are looked up with ``getInvoices`` — their ids in calls of at
most 1,000 — and each invoice decides:

* ``paid`` → activated exactly as the webhook path does (:func:`actors.payments.completion.activate`;
  whichever comes first wins, the other is a no-op);
* ``expired`` → the payment ``failed`` and the user told once;
* ``active`` → nothing yet.

Pending payments older than that window are ``failed`` (``error_message`` says so) and their users
told once. A payment whose activation fails (the panel down) stays pending with its stored plan and
is tried again by the next run; it is counted ``error`` and logged, the run goes on with the others.
Counts go to ``cybervpn_payments_verified_total{status}`` and the run's ``payments job done`` line.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import dramatiq
from sqlalchemy import text

from actors.notifications.outbox import Outgoing, queue_notifications
from actors.payments import QUEUE, texts
from actors.payments.completion import activate, count_outcomes
from worker_app.alerts import AdminAlerts
from worker_app.clients.cryptobot import CryptoPayClient, Invoice
from worker_app.clients.remnawave import RemnawaveClient
from worker_app.db import Database
from worker_app.errors import ConfigurationError, WorkerError
from worker_app.lazy import created_once
from worker_app.runtime import get_runtime

log = logging.getLogger(__name__)

_PENDING = text(
    """
    SELECT id, external_id, telegram_id, created_at FROM payments
    WHERE status = 'pending' AND provider = 'cryptobot' AND created_at >= :since AND external_id IS NOT NULL
    ORDER BY created_at
    """
)
_FAIL = text(
    """
    UPDATE payments SET status = 'failed', error_message = :why, updated_at = now()
    WHERE id = ANY(CAST(:ids AS uuid[])) AND status = 'pending'
    RETURNING id, telegram_id
    """
)
_TOO_OLD = text(
    """
    SELECT id FROM payments p
    WHERE status = 'pending' AND provider = 'cryptobot' AND created_at < :since
      AND NOT EXISTS (SELECT 1 FROM payment_activations a WHERE a.payment_id = p.id)
    """
)


@dataclass
class Verified:
    counts: dict[str, int] = field(default_factory=dict)
    calls: int = 0

    def add(self, status: str, n: int = 1) -> None:
        if n:
            self.counts[status] = self.counts.get(status, 0) + n
            _verified_total().labels(status).inc(n)


def verify(
    database: Database, cryptopay: CryptoPayClient, panel: RemnawaveClient, alerts: AdminAlerts, *,
    now: datetime, max_age: timedelta,
) -> Verified:  # fmt: skip
    """One run: every pending payment within ``max_age`` checked against its invoice."""
    report = Verified()
    with database.transaction() as s:
        pending = list(s.execute(_PENDING, {"since": now - max_age}))
    by_invoice = {str(p.external_id): p for p in pending}
    invoices = cryptopay.get_invoices([int(i) for i in by_invoice if i.isdigit()]) if by_invoice else []
    report.calls = -(-len(by_invoice) // 1000)
    expired: list[uuid.UUID] = []
    for invoice in invoices:
        payment = by_invoice.get(str(invoice.invoice_id))
        if payment is None:
            continue
        if invoice.status == "paid":
            report.add(_activate(database, panel, alerts, payment.id, invoice))
        elif invoice.status == "expired":
            expired.append(payment.id)
        else:
            report.add("active")
    report.add("expired", _fail(database, expired, "the invoice expired unpaid", texts.expired()))
    with database.transaction() as s:
        too_old = [r.id for r in s.execute(_TOO_OLD, {"since": now - max_age})]
    hours = int(max_age.total_seconds() // 3600)
    report.add("too_old", _fail(database, too_old, f"still pending after {hours} h", texts.expired()))
    return report


def _activate(database: Database, panel: RemnawaveClient, alerts: AdminAlerts, payment_id: uuid.UUID,
              invoice: Invoice) -> str:  # fmt: skip
    try:
        outcome = activate(database, panel, alerts, payment_id, invoice, source="poller")
    except ConfigurationError:
        raise  # every payment would fail the same way: the run stops, with the policy's alert
    except WorkerError as e:  # the next run tries again (from the stored plan, if there is one)
        log.warning("payment %s paid but not activated yet: %s: %s", payment_id, type(e).__name__, e)
        return "error"
    return "paid" if outcome == "completed" else outcome


def _fail(database: Database, ids: Sequence[uuid.UUID], why: str, notice: str) -> int:
    """Mark ``ids`` failed (those still pending) and tell their users once; how many were marked."""
    if not ids:
        return 0
    with database.transaction() as s:
        failed = list(s.execute(_FAIL, {"ids": list(ids), "why": why}))
        queue_notifications(s, [Outgoing(f"payment:{r.id}:failed", r.telegram_id, notice, "payment_failed")
                                for r in failed if r.telegram_id is not None])  # fmt: skip
    return len(failed)


@created_once
def _verified_total() -> Any:
    import prometheus_client as prom

    return prom.Counter(
        "cybervpn_payments_verified", "Payments checked by verify_pending_payments, by what was found: "
        "paid (completed now), already_completed, review, active, expired, too_old, error (not activated).",
        ("status",), registry=None,
    )  # fmt: skip


@dramatiq.actor(queue_name=QUEUE, store_results=True)
def verify_pending_payments() -> dict[str, Any]:
    """Check every pending Crypto Pay payment of the last 24 h against its invoice (every 5 min)."""
    runtime = get_runtime()
    max_age = timedelta(hours=runtime.settings.payments_pending_max_age_h)
    report = verify(runtime.database, runtime.cryptobot, runtime.remnawave, runtime.alerts,
                    now=datetime.now(UTC), max_age=max_age)  # fmt: skip
    failed = report.counts.get("expired", 0) + report.counts.get("too_old", 0)
    count_outcomes(runtime.redis, {"completed": report.counts.get("paid", 0), "failed": failed})
    summary = {"job": "verify_pending_payments", "counts": report.counts, "get_invoices_calls": report.calls}
    log.info("payments job done: verify_pending_payments %s", report.counts, extra=summary)
    return summary
