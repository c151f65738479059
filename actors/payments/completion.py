"""``process_payment_completion(payment_id, invoice_data, provider)``: a paid invoice (the webhook
path; the poller calls :func:`activate` too) becomes subscription time, exactly once — the steps
and why each is safe to repeat are in :mod:`actors.payments.activation`.

Outcomes (the actor's result and its log line ``payments job done``): ``completed`` (this call
completed it), ``already_completed`` (another call or path did), ``review`` (the invoice does not
match the payment: never activated, one CRITICAL alert ``payments.review.<payment id>``).
The panel unreachable is retried per the payments policy (30 s, 2 min, 10 min), then dead with a
CRITICAL alert; the payment stays ``activating`` and listed by ``worker-app payments unactivated``.
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import dramatiq
import redis

from actors.payments import QUEUE, texts
from actors.payments.activation import ACTIVATING, COMPLETED, REVIEW, apply, begin, finish, refused
from actors.payments.webhook_retry import mark_processed
from worker_app.alerts import AdminAlerts
from worker_app.clients.cryptobot import CryptoPayUnavailable, Invoice
from worker_app.clients.remnawave import RemnawaveClient, RemnawaveError
from worker_app.db import Database
from worker_app.errors import ConfigurationError, PermanentError
from worker_app.rolling import RollingCounts
from worker_app.runtime import get_runtime

log = logging.getLogger(__name__)
PROVIDERS = ("cryptobot",)


def count_outcomes(redis_client: redis.Redis, counts: dict[str, int]) -> None:
    """Add payment outcomes (``completed``, ``failed``) to the fleet's per-minute counts that the
    ``payment_failure`` anomaly rule reads; Redis down loses the counts, never the payment."""
    try:
        RollingCounts(redis_client, "payments").add(counts, time.time())
    except redis.RedisError as e:
        log.warning("payment outcomes not counted: Redis unavailable (%s)", e)


def activate(
    database: Database, panel: RemnawaveClient, alerts: AdminAlerts, payment_id: uuid.UUID, invoice: Invoice,
    *, source: str, now: datetime | None = None,
) -> str:  # fmt: skip
    """Turn the paid ``invoice`` of ``payment_id`` into subscription time once; the outcome.

    The panel refusing for good (the user deleted, the update rejected — not its token: that is the
    configuration's fault, raised) sends the payment to ``review`` with one CRITICAL alert, as a
    mismatched invoice does: retrying cannot help, and the money is visible, not failed."""
    try:
        begun = begin(database, panel, payment_id, invoice, source=source, now=now or datetime.now(UTC))
        if begun.outcome == ACTIVATING and begun.plan is not None:
            apply(panel, database, begun.plan)
    except RemnawaveError as e:
        if not isinstance(e, PermanentError) or isinstance(e, ConfigurationError):
            raise
        reason = f"the panel refused the activation: {e}"
        begun = refused(database, payment_id, invoice, source=source, reason=reason)
    if begun.outcome == REVIEW:
        if begun.new_review:
            alerts.alert(f"payments.review.{payment_id}",
                         f"payment {payment_id} NOT activated, marked for review: {begun.reason}",
                         severity="critical")  # fmt: skip
        return REVIEW
    if begun.outcome == COMPLETED or begun.plan is None:
        return "already_completed"
    plan = begun.plan
    amount = Decimal(invoice.paid_amount or invoice.amount)
    currency = invoice.paid_asset or invoice.asset or invoice.fiat or ""
    confirmation = texts.completed(amount, currency, plan.days, plan.new_expire_at)
    return COMPLETED if finish(database, plan, invoice, confirmation) else "already_completed"


@dramatiq.actor(queue_name=QUEUE, store_results=True)
def process_payment_completion(
    payment_id: str, invoice_data: dict[str, Any], provider: str
) -> dict[str, Any]:
    """Activate the payment ``payment_id`` paid by the invoice ``invoice_data`` (the provider's own
    JSON, as its webhook carried it) once."""
    if provider not in PROVIDERS:
        raise PermanentError(f"unknown payment provider {provider!r} (known: {', '.join(PROVIDERS)})")
    try:
        payment = uuid.UUID(str(payment_id))
    except ValueError:
        raise PermanentError(f"payment_id {payment_id!r} is not a uuid") from None
    runtime = get_runtime()
    try:
        invoice = Invoice.from_json(invoice_data)
    except CryptoPayUnavailable as e:  # a malformed reply would be transient; a malformed argument is not
        raise PermanentError(f"invoice_data is not a Crypto Pay invoice: {e}") from None
    outcome = activate(
        runtime.database, runtime.remnawave, runtime.alerts, payment, invoice, source="webhook"
    )
    mark_processed(runtime.database, invoice.invoice_id)  # retry_failed_webhooks leaves it alone now
    if outcome == COMPLETED:
        count_outcomes(runtime.redis, {"completed": 1})
    summary = {"job": "process_payment_completion", "payment_id": str(payment), "outcome": outcome,
               "invoice_id": invoice.invoice_id}  # fmt: skip
    log.info("payments job done: process_payment_completion %s", outcome, extra=summary)
    return summary
