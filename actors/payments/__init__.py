"""Payments: verifying pending CryptoBot invoices, webhook completions, failed-webhook retries,
the daily financial stats.

Package = domain = queue ``payments``; retry policy: ``worker_app.policies.POLICIES['payments']``.
"""

from __future__ import annotations

from worker_app.domains import register_cli, register_dashboard, register_overview
from worker_app.heartbeat import declare_heartbeat

QUEUE = "payments"

heartbeat = declare_heartbeat(QUEUE)
register_cli("actors.payments.cli:payments")
register_dashboard("actors.payments.dashboard:add_pages")
register_overview("actors.payments.dashboard:tiles")

from actors.payments.completion import process_payment_completion  # noqa: E402  (needs QUEUE)
from actors.payments.financial_stats import aggregate_financial_stats  # noqa: E402
from actors.payments.verify import verify_pending_payments  # noqa: E402
from actors.payments.webhook_retry import retry_failed_webhooks  # noqa: E402

__all__ = [
    "QUEUE",
    "aggregate_financial_stats",
    "heartbeat",
    "process_payment_completion",
    "retry_failed_webhooks",
    "verify_pending_payments",
]
