"""Payments: verifying pending CryptoBot invoices, webhook completions, failed-webhook retries.

Package = domain = queue ``payments``; retry policy: ``worker_app.policies.POLICIES['payments']``.
"""

from __future__ import annotations

from worker_app.heartbeat import declare_heartbeat

QUEUE = "payments"

heartbeat = declare_heartbeat(QUEUE)
