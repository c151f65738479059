"""Telegram notifications: the notification_queue consumer, on-demand sends and broadcasts.

Module = domain = queue ``notifications``; retry policy: ``worker_app.policies.POLICIES['notifications']``.
"""

from __future__ import annotations

from worker_app.heartbeat import declare_heartbeat

QUEUE = "notifications"

heartbeat = declare_heartbeat(QUEUE)
