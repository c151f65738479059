"""Telling the admin who started a bulk job how it went (a summary, an export's link).

``initiated_by`` names the admin: ``admin:<telegram id>`` (as the admin SPA sends it) or a bare
Telegram id gets the message alone; anything else (``api``, ``cli:alice``, none) reaches every
``ADMIN_TELEGRAM_IDS``. The message goes through the durable outbox of the notifications domain
(rate limits, retries, sent journal), keyed by the job, so a redelivered job never sends it twice.
"""

from __future__ import annotations

from collections.abc import Sequence

from actors.notifications.outbox import Outgoing, queue_notifications
from worker_app.config import Settings
from worker_app.db import Database
from worker_app.jobs import initiator_chat_id


def recipients(settings: Settings, initiated_by: str | None) -> list[int]:
    """The chats a job's notice goes to: the initiating admin, or every configured admin."""
    chat = initiator_chat_id(initiated_by)
    if chat is not None:
        return [chat]
    return list(dict.fromkeys(settings.admin_telegram_ids))


def notify(
    database: Database, key: str, text: str, chats: Sequence[int], *, notification_type: str = "bulk_summary"
) -> int:
    """Queue ``text`` (HTML) once for each chat, keyed ``<key>:<chat>``; how many were queued now
    (0 when every chat had it already, e.g. on a redelivery)."""
    messages = [Outgoing(f"{key}:{chat}", chat, text, notification_type, "HTML") for chat in chats]
    with database.transaction() as s:
        return len(queue_notifications(s, messages))
