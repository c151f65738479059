"""Telegram notifications: the ``notification_queue`` consumer, on-demand sends and broadcasts.

Package = domain = queue ``notifications``; retry policy: ``worker_app.policies.POLICIES['notifications']``.
One module per feature, each holding its plain functions and the thin actors that call them:

* :mod:`.queue` — ``process_notification_queue``, the ``notification_queue`` consumer (drains in
  batches; fleet-wide drain slots in :mod:`.slots`);
* :mod:`.on_demand` — ``send_notification`` (send now, or defer to the queue after 3 retries) and
  ``defer_notification``, the domain's exhaustion action;
* :mod:`.broadcast` — ``broadcast_message`` (one text to many chats, with progress), cancelled
  through :mod:`.broadcast_cancel`;
* :mod:`.cancel` — the domain's canceller for ``worker-app jobs cancel`` (broadcasts, deferred sends);
* :mod:`.cli` — ``worker-app notifications ...``;
* :mod:`.metrics` — ``cybervpn_notifications_total``, ``cybervpn_notification_latency_seconds``.

Sending itself (rate limits, circuit breaker, sent journal, text checks) is the platform's
:mod:`worker_app.telegram`, which alerts and every other domain's messages use too.
"""

from __future__ import annotations

from actors.notifications.broadcast import broadcast_message
from actors.notifications.cancel import cancel_notification_job, describe_notification_job
from actors.notifications.on_demand import defer_notification, send_notification
from actors.notifications.queue import QUEUE, process_notification_queue
from worker_app.domains import register_cli, register_dashboard, register_web
from worker_app.heartbeat import declare_heartbeat
from worker_app.jobs import register_canceller

heartbeat = declare_heartbeat(QUEUE)
register_canceller(cancel_notification_job, describe_notification_job)  # worker-app jobs cancel
register_cli("actors.notifications.cli:notifications")
register_web("actors.notifications.web:add_routes")
register_dashboard("actors.notifications.dashboard:add_pages")

__all__ = [
    "QUEUE",
    "broadcast_message",
    "defer_notification",
    "heartbeat",
    "process_notification_queue",
    "send_notification",
]
