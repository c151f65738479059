"""``retry_failed_webhooks`` (every 30 min): a genuine paid-invoice webhook that was recorded but not
processed gets its completion enqueued again — at most ``PAYMENTS_WEBHOOK_MAX_TRIES`` (3) times in
all, then one CRITICAL alert.

Which rows: ``webhook_logs`` from Crypto Pay, valid, ``invoice_paid``, accepted (no
``error_message``: not a duplicate, not unknown), not ``processed_at`` (set by
``process_payment_completion`` when it is done with the invoice), younger than 24 h and older than
``PAYMENTS_WEBHOOK_RETRY_AFTER_MIN`` (10: a completion still in flight is left alone). ``attempts``
counts the enqueues (the receiver's own is the first). Enqueueing again is safe: the completion is
idempotent (:mod:`actors.payments.activation`).

``RETRY_FAILED_WEBHOOKS_BATCH_LIMIT`` caps the webhooks one run takes (enqueued, marked processed or
given up), those tried fewest times first, then the oldest: the rest wait for the next run.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import dramatiq
from sqlalchemy import text

from actors.payments import QUEUE
from worker_app.alerts import AdminAlerts
from worker_app.db import Database
from worker_app.runtime import get_runtime

log = logging.getLogger(__name__)
JOB = "retry_failed_webhooks"

_DUE = text(
    """
    SELECT w.id, w.external_id, w.attempts, w.payload -> 'payload' AS invoice, p.id AS payment_id, p.status
    FROM webhook_logs w
    LEFT JOIN payments p ON p.id::text = w.payload -> 'payload' ->> 'payload' OR p.external_id = w.external_id
    WHERE w.source = 'cryptobot' AND w.is_valid AND w.event_type = 'invoice_paid' AND w.error_message IS NULL
      AND w.processed_at IS NULL AND w.created_at > now() - interval '24 hours'
      AND w.created_at < now() - CAST(:after AS interval)
    ORDER BY w.attempts, w.created_at
    LIMIT :limit
    FOR UPDATE OF w SKIP LOCKED
    """
)
_TRIED = text("UPDATE webhook_logs SET attempts = attempts + 1 WHERE id = :id")
_GIVE_UP = text(
    "UPDATE webhook_logs SET error_message = :why WHERE id = :id AND error_message IS NULL RETURNING id"
)
_PROCESSED = text(
    """
    UPDATE webhook_logs SET processed_at = now()
    WHERE source = 'cryptobot' AND external_id = :invoice AND is_valid AND processed_at IS NULL
    """
)


def mark_processed(database: Database, invoice_id: int | str) -> None:
    """The webhooks of ``invoice_id`` are dealt with (the payment completed, or sent for review)."""
    with database.transaction() as s:
        s.execute(_PROCESSED, {"invoice": str(invoice_id)})


def retry(
    database: Database, send: Any, alerts: AdminAlerts, *, max_tries: int, retry_after: timedelta,
    limit: int | None = None,
) -> dict[str, int]:  # fmt: skip
    """One run; ``send(payment_id, invoice, provider)`` enqueues a completion. Counts by outcome.
    Takes at most ``limit`` webhooks (``None``: every one due), only those it locks."""
    counts: dict[str, int] = {}
    due = {"after": f"{int(retry_after.total_seconds())} seconds", "limit": limit}
    with database.transaction() as s:
        for row in s.execute(_DUE, due).all():
            if row.status == "completed":
                s.execute(_PROCESSED, {"invoice": row.external_id})
                outcome = "already_completed"
            elif row.attempts >= max_tries or row.payment_id is None:
                why = (
                    "no such payment"
                    if row.payment_id is None
                    else f"not processed after {row.attempts} tries"
                )
                if s.execute(_GIVE_UP, {"id": row.id, "why": f"gave up: {why}"}).one_or_none() is not None:
                    _alert_unprocessed(alerts, row.external_id, why)
                outcome = "gave_up"
            else:
                send(str(row.payment_id), row.invoice, "cryptobot")
                s.execute(_TRIED, {"id": row.id})
                outcome = "enqueued"
            counts[outcome] = counts.get(outcome, 0) + 1
    return counts


def _alert_unprocessed(alerts: AdminAlerts, invoice_id: str, why: str) -> None:
    alerts.alert(
        f"payments.webhook_unprocessed.{invoice_id}",
        f"Crypto Pay webhook for invoice {invoice_id}: {why}; the payment may be paid and not activated "
        "(worker-app payments unactivated)",
        severity="critical",
    )


@dramatiq.actor(queue_name=QUEUE, store_results=True)
def retry_failed_webhooks() -> dict[str, Any]:
    """Enqueue again the completions of genuine webhooks recorded but not processed (every 30 min)."""
    from actors.payments.completion import process_payment_completion

    runtime = get_runtime()
    s = runtime.settings
    limit = s.batch_limit(JOB)
    counts = retry(runtime.database, process_payment_completion.send, runtime.alerts,
                   max_tries=s.payments_webhook_max_tries, limit=limit,
                   retry_after=timedelta(minutes=s.payments_webhook_retry_after_min))  # fmt: skip
    summary: dict[str, Any] = {"job": JOB, "counts": counts}
    if limit is not None:  # limited: this run took all it may; more may be waiting
        summary |= {"batch_limit": limit, "limited": sum(counts.values()) >= limit}
    log.info("payments job done: retry_failed_webhooks %s", counts, extra=summary)
    return summary
