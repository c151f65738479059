"""Cancelling a broadcast: no drain claims its rows from the cancel on, and its pending rows are
withdrawn — marked ``failed`` with ``error_message`` "cancelled by <who>" (the backend's table keeps
its statuses) and counted in ``notification_broadcasts.cancelled`` — in short transactions,
skipping rows a drain holds (they finish; any that come back pending are withdrawn by the next
refresh, see :mod:`actors.notifications.broadcast`).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.orm import Session

from worker_app.db import Database

CANCEL_CHUNK = 5000
"""Rows withdrawn per transaction when a broadcast is cancelled (short row locks, steady progress)."""

_WITHDRAW = text(
    """
    WITH cancelled AS (
        SELECT id, coalesce(cancelled_by, 'unknown') AS cancelled_by FROM notification_broadcasts
        WHERE id = ANY(CAST(:ids AS text[])) AND cancelled_at IS NOT NULL AND settled_at IS NULL
    ), withdrawn AS (
        SELECT n.id, c.id AS broadcast_id, c.cancelled_by
        FROM cancelled AS c
        JOIN notification_broadcast_items AS i ON i.broadcast_id = c.id
        JOIN notification_queue AS n ON n.id = i.notification_id
        WHERE n.status = 'pending'
        LIMIT :limit
        FOR UPDATE OF n SKIP LOCKED
    ), marked AS (
        UPDATE notification_queue AS n
        SET status = 'failed', error_message = 'cancelled by ' || w.cancelled_by, updated_at = now()
        FROM withdrawn AS w WHERE n.id = w.id
        RETURNING w.broadcast_id
    ), counted AS (
        UPDATE notification_broadcasts AS b SET cancelled = b.cancelled + m.n
        FROM (SELECT broadcast_id, count(*) AS n FROM marked GROUP BY broadcast_id) AS m
        WHERE b.id = m.broadcast_id
        RETURNING m.n
    )
    SELECT coalesce(sum(n), 0)::int FROM counted
    """
)
_MARK_CANCELLED = text(
    """
    UPDATE notification_broadcasts
    SET cancelled_at = coalesce(cancelled_at, now()), cancelled_by = coalesce(cancelled_by, :by)
    WHERE id = :id AND settled_at IS NULL
    RETURNING id
    """
)


def cancel_broadcast(session: Session, broadcast_id: str, *, by: str) -> bool:
    """Mark the broadcast cancelled (in the caller's transaction, which should hold its row locked):
    no drain claims its rows from the commit on. False if it is unknown or already settled.
    Then :func:`withdraw_cancelled` marks its pending rows, and a refresh settles it."""
    return session.execute(_MARK_CANCELLED, {"id": broadcast_id, "by": by}).first() is not None


def withdraw_cancelled(database: Database, ids: Sequence[str], *, chunk: int = CANCEL_CHUNK) -> int:
    """Mark every pending row of the cancelled, unsettled broadcasts among ``ids`` ``failed``
    ("cancelled by <who>"), ``chunk`` rows per transaction, skipping rows a drain holds; their count."""
    withdrawn = 0
    while True:
        with database.transaction() as session:
            count = int(session.execute(_WITHDRAW, {"ids": list(ids), "limit": chunk}).scalar_one())
        withdrawn += count
        if count < chunk:
            return withdrawn
