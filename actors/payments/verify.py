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

``VERIFY_PENDING_PAYMENTS_BATCH_LIMIT`` caps the payments one run checks, and separately the too-old
ones it fails. The checks go round: each run starts after the last payment the previous one checked
(remembered in Redis, ``cybervpn:payments:verify_resume_after``; lost, the run starts from the
oldest), so payments whose invoices stay ``active`` do not keep the newer ones from being checked.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import dramatiq
import redis
from sqlalchemy import text
from sqlalchemy.orm import Session

from actors.notifications.outbox import Outgoing, queue_notifications
from actors.payments import QUEUE, texts
from actors.payments.completion import activate, count_outcomes
from worker_app.alerts import AdminAlerts
from worker_app.clients.cryptobot import CryptoPayClient, Invoice
from worker_app.clients.remnawave import RemnawaveClient
from worker_app.db import Database
from worker_app.errors import ConfigurationError, WorkerError
from worker_app.lazy import created_once
from worker_app.redis_client import key
from worker_app.runtime import get_runtime

log = logging.getLogger(__name__)
JOB = "verify_pending_payments"
RESUME_KEY = key("payments", "verify_resume_after")
Resume = tuple[datetime, uuid.UUID]
"""(``created_at``, ``id``) of the last payment a limited run checked: the next run starts after it."""

_PENDING = text(
    """
    SELECT id, external_id, telegram_id, created_at FROM payments
    WHERE status = 'pending' AND provider = 'cryptobot' AND created_at >= :since AND external_id IS NOT NULL
      AND (CAST(:after_at AS timestamptz) IS NULL
           OR (created_at, id) > (CAST(:after_at AS timestamptz), CAST(:after_id AS uuid)))
    ORDER BY created_at, id
    LIMIT :limit
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
    ORDER BY created_at
    LIMIT :limit
    """
)


@dataclass
class Verified:
    counts: dict[str, int] = field(default_factory=dict)
    calls: int = 0
    resume_after: Resume | None = None
    """Where the next run starts (``None``: from the oldest)."""
    limited: bool = False
    """The run checked, or failed as too old, as many payments as its limit allows."""

    def add(self, status: str, n: int = 1) -> None:
        if n:
            self.counts[status] = self.counts.get(status, 0) + n
            _verified_total().labels(status).inc(n)


def verify(
    database: Database, cryptopay: CryptoPayClient, panel: RemnawaveClient, alerts: AdminAlerts, *,
    now: datetime, max_age: timedelta, limit: int | None = None, after: Resume | None = None,
) -> Verified:  # fmt: skip
    """One run: every pending payment within ``max_age`` checked against its invoice — or, with a
    ``limit``, that many from ``after`` on (see the module docstring)."""
    report = Verified()
    with database.transaction() as s:
        pending = _pending(s, now - max_age, limit, after)
    if limit is not None and len(pending) >= limit:
        report.resume_after, report.limited = (pending[-1].created_at, pending[-1].id), True
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
        too_old = [r.id for r in s.execute(_TOO_OLD, {"since": now - max_age, "limit": limit})]
    report.limited |= limit is not None and len(too_old) >= limit
    hours = int(max_age.total_seconds() // 3600)
    report.add("too_old", _fail(database, too_old, f"still pending after {hours} h", texts.expired()))
    return report


def _pending(s: Session, since: datetime, limit: int | None, after: Resume | None) -> list[Any]:
    """At most ``limit`` pending payments, oldest first, from ``after`` on; none left after it:
    from the oldest again."""
    params = {"since": since, "limit": limit, "after_at": None, "after_id": None}
    if after is not None:
        pending = list(s.execute(_PENDING, {**params, "after_at": after[0], "after_id": after[1]}))
        if pending:
            return pending
    return list(s.execute(_PENDING, params))


def load_resume(redis_client: redis.Redis) -> Resume | None:
    """Where the previous limited run stopped; ``None`` (from the oldest) when unknown."""
    try:
        raw = redis_client.get(RESUME_KEY)
    except redis.RedisError as e:
        log.warning("verify_pending_payments starts from the oldest: Redis unavailable (%s)", e)
        return None
    if not isinstance(raw, str) or " " not in raw:
        return None
    at, _, payment_id = raw.partition(" ")
    return datetime.fromisoformat(at), uuid.UUID(payment_id)


def save_resume(redis_client: redis.Redis, resume: Resume | None, ttl_s: int) -> None:
    """Remember where the next run starts (``None``: from the oldest)."""
    try:
        if resume is None:
            redis_client.delete(RESUME_KEY)
        else:
            redis_client.set(RESUME_KEY, f"{resume[0].isoformat()} {resume[1]}", ex=ttl_s)
    except redis.RedisError as e:
        log.warning("verify_pending_payments resume point not saved: Redis unavailable (%s)", e)


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
    limit = runtime.settings.batch_limit(JOB)
    after = load_resume(runtime.redis) if limit is not None else None
    report = verify(runtime.database, runtime.cryptobot, runtime.remnawave, runtime.alerts,
                    now=datetime.now(UTC), max_age=max_age, limit=limit, after=after)  # fmt: skip
    if limit is not None:
        save_resume(runtime.redis, report.resume_after, int(max_age.total_seconds()))
    failed = report.counts.get("expired", 0) + report.counts.get("too_old", 0)
    count_outcomes(runtime.redis, {"completed": report.counts.get("paid", 0), "failed": failed})
    summary: dict[str, Any] = {"job": JOB, "counts": report.counts, "get_invoices_calls": report.calls}
    if limit is not None:  # limited: the run took all its limit allows; more may be waiting
        summary |= {"batch_limit": limit, "limited": report.limited}
    log.info("payments job done: verify_pending_payments %s", report.counts, extra=summary)
    return summary
