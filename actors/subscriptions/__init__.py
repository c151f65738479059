"""Subscription lifecycle: expiry reminders, disabling expired users, monthly traffic reset, auto-renew.

Package = domain = queue ``subscriptions``; retry policy: ``worker_app.policies.POLICIES['subscriptions']``.
"""

from __future__ import annotations

from worker_app.heartbeat import declare_heartbeat

QUEUE = "subscriptions"

heartbeat = declare_heartbeat(QUEUE)
