"""Scheduled broadcasts (seed 001): listed, sent now or cancelled before they start.

``broadcast_message(..., scheduled_at=T)`` inserts its rows at once with ``scheduled_at = T``: the
queue consumer skips rows not yet due, so they wait in PostgreSQL (nothing in RabbitMQ, nothing held
in memory) and go out from ``T`` at the rate limit, like any row. The broadcast's own row keeps
``starts_at`` and, once every row is settled, its totals (``total``, ``sent``, ``failed``,
``cancelled``). Here:

* :func:`list_broadcasts` — broadcasts by state: ``scheduled`` (its start is ahead), ``sending``,
  ``done`` (settled), ``cancelled``;
* :func:`send_now` — a scheduled broadcast's rows (those still pending and not yet due) become due
  now, and a drain is kicked;
* cancelling is :func:`actors.notifications.broadcast_cancel.cancel_broadcast` (``worker-app jobs
  cancel ID``, ``POST /api/v1/jobs/<id>/cancel``), as for any broadcast: its rows are withdrawn
  before any is sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import text

from worker_app.db import Database

State = Literal["scheduled", "sending", "done", "cancelled"]
STATES: tuple[State, ...] = ("scheduled", "sending", "done", "cancelled")

_STATE = """
    CASE WHEN b.cancelled_at IS NOT NULL THEN 'cancelled'
         WHEN b.settled_at IS NOT NULL THEN 'done'
         WHEN b.starts_at > now() THEN 'scheduled'
         ELSE 'sending' END
"""
_LIST = text(
    f"""
    SELECT b.id, {_STATE} AS state, b.notification_type, b.total, b.sent, b.failed, b.cancelled,
           b.starts_at, b.created_at, b.settled_at
    FROM notification_broadcasts b
    WHERE (CAST(:state AS text) IS NULL OR {_STATE} = :state) AND (CAST(:id AS text) IS NULL OR b.id = :id)
    ORDER BY coalesce(b.starts_at, b.created_at) DESC
    LIMIT :limit
    """
)
_DUE_NOW = text(
    """
    UPDATE notification_queue n SET scheduled_at = now()
    FROM notification_broadcast_items i
    WHERE i.broadcast_id = :id AND n.id = i.notification_id
      AND n.status = 'pending' AND n.scheduled_at > now()
    RETURNING n.id
    """
)
_STARTED_NOW = text(
    """
    UPDATE notification_broadcasts SET starts_at = now()
    WHERE id = :id AND settled_at IS NULL AND cancelled_at IS NULL AND starts_at > now()
    RETURNING id
    """
)


@dataclass(frozen=True)
class BroadcastRow:
    broadcast_id: str
    state: State
    notification_type: str
    total: int
    sent: int | None
    failed: int | None
    cancelled: int
    scheduled_at: datetime | None
    created_at: datetime
    settled_at: datetime | None

    def as_dict(self) -> dict[str, object]:
        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {"broadcast_id": self.broadcast_id, "state": self.state, "type": self.notification_type,
                "total": self.total, "sent": self.sent, "failed": self.failed, "cancelled": self.cancelled,
                "scheduled_at": iso(self.scheduled_at), "created_at": iso(self.created_at),
                "settled_at": iso(self.settled_at)}  # fmt: skip


def list_broadcasts(database: Database, state: State | None = None, limit: int = 100) -> list[BroadcastRow]:
    """Broadcasts (``state`` only, if given), the latest start or creation first."""
    with database.new_session() as s:
        rows = s.execute(_LIST, {"state": state, "limit": limit, "id": None}).all()
    return [BroadcastRow(*row) for row in rows]


def get_broadcast_row(database: Database, broadcast_id: str) -> BroadcastRow | None:
    """One broadcast with its state, ``None`` when unknown."""
    with database.new_session() as s:
        row = s.execute(_LIST, {"state": None, "limit": 1, "id": broadcast_id}).first()
    return BroadcastRow(*row) if row else None


def send_now(database: Database, broadcast_id: str) -> int | None:
    """Make a scheduled broadcast due now; how many rows became due, ``None`` when it is not a
    scheduled broadcast any more (unknown, started, settled or cancelled)."""
    with database.transaction() as s:
        if s.execute(_STARTED_NOW, {"id": broadcast_id}).first() is None:
            return None
        moved = len(s.execute(_DUE_NOW, {"id": broadcast_id}).all())
    from actors.notifications.queue import process_notification_queue

    process_notification_queue.send()
    return moved
