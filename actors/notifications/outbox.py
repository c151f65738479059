"""Messages other domains hand to the ``notification_queue`` consumer (reminders, notices): they
inherit its rate limits, retries, sent journal and metrics, and are sent once.

Each message has a *key* naming what it is about (``reminder:42:24h:2026-12-08T10:00:00Z``); its row
id is derived from that key, so queueing the same message again — a redelivered job, a re-run, a
worker killed after the insert — inserts nothing (``ON CONFLICT DO NOTHING``). Rows are inserted in
the caller's transaction: commit them together with whatever they report.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.orm import Session

from worker_app.telegram.text import check_chat_id, check_text

NAMESPACE = uuid.UUID("5d1c3a0e-8f0b-4a57-9d1e-6c0f4f1e2a11")
"""Namespace of the keyed row ids (uuid5): fixed forever, or re-runs would queue messages again."""

_INSERT = text(
    """
    INSERT INTO notification_queue (id, telegram_id, message, notification_type, parse_mode)
    SELECT * FROM unnest(
        CAST(:ids AS uuid[]), CAST(:chats AS bigint[]), CAST(:texts AS text[]),
        CAST(:types AS text[]), CAST(:modes AS text[])
    )
    ON CONFLICT (id) DO NOTHING
    RETURNING id
    """
)


@dataclass(frozen=True)
class Outgoing:
    """One message to one chat; ``key`` makes it once-only (see the module docstring)."""

    key: str
    telegram_id: int
    text: str
    notification_type: str
    parse_mode: str | None = "HTML"


def row_id(key: str) -> uuid.UUID:
    """The ``notification_queue`` id of the message keyed ``key``."""
    return uuid.uuid5(NAMESPACE, key)


def queue_notifications(session: Session, messages: Sequence[Outgoing]) -> set[uuid.UUID]:
    """Insert ``messages`` not queued before; the ids of those inserted now. A text Telegram would
    refuse raises :class:`~worker_app.telegram.text.NotificationRejected` before anything is written."""
    if not messages:
        return set()
    modes = [check_text(m.text, m.parse_mode) for m in messages]
    rows = session.execute(
        _INSERT,
        {
            "ids": [row_id(m.key) for m in messages],
            "chats": [check_chat_id(m.telegram_id) for m in messages],
            "texts": [m.text for m in messages],
            "types": [m.notification_type for m in messages],
            "modes": modes,
        },
    )
    return {r[0] for r in rows}
