"""Telegram notifications: the notification_queue consumer, on-demand sends and broadcasts (issue 3).

Module = domain = queue ``notifications``; its retry policy is ``worker_app.policies.POLICIES['notifications']``.
"""

from __future__ import annotations

from worker_app.heartbeat import declare_heartbeat

QUEUE = "notifications"

heartbeat = declare_heartbeat(QUEUE)
