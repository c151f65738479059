"""The consuming half of crash-safe dead-letter replay: a replayed message claims its dead letter.

``worker-app dlq replay`` stamps each replayed message with ``replay_of = <dead letter id>``.
:class:`ReplayClaims` marks that row ``replay_started_*`` by this message id before the actor runs
(see :mod:`worker_app.middleware.once`); a second message replaying the same row — published by a
replay re-run after one was killed between its publish and its commit — is skipped.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import text

from worker_app.db import Database
from worker_app.lazy import created_once
from worker_app.middleware.once import RunOnce

log = logging.getLogger(__name__)

_CLAIM = text("""
    UPDATE dead_letters
    SET replay_started_at = coalesce(replay_started_at, now()), replay_started_message_id = :message_id
    WHERE id = :id AND (replay_started_message_id IS NULL OR replay_started_message_id = :message_id)
    RETURNING 1
""")
_EXISTS = text("SELECT 1 FROM dead_letters WHERE id = :id")


@created_once
def _duplicates_metric() -> Any:
    import prometheus_client as prom

    return prom.Counter(
        "cybervpn_replay_duplicates_dropped",
        "Replayed messages skipped because another replay of the same dead letter already ran.",
    )


def replay_of(message: Any) -> int | None:
    value = message.options.get("replay_of")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def claim_replay(database: Database, dead_letter_id: int, message_id: str) -> bool:
    """Mark the row's replay started by ``message_id``; ``False`` if another message started it."""
    params = {"id": dead_letter_id, "message_id": message_id}
    with database.engine.begin() as conn:
        if conn.execute(_CLAIM, params).first() is not None:
            return True
        return conn.execute(_EXISTS, params).first() is None  # the row is gone: nothing to guard


class ReplayClaims(RunOnce):
    """Claims each replayed message's dead letter before it runs; skips a second replay of it."""

    def claim(self, message: Any) -> bool | None:
        dead_letter_id = replay_of(message)
        if dead_letter_id is None:
            return None
        return claim_replay(self.database, dead_letter_id, message.message_id)

    def on_duplicate(self, message: Any) -> str:
        log.warning(
            "duplicate replay dropped: dead letter %s already replayed by another message", replay_of(message)
        )
        _duplicates_metric().inc()
        return f"duplicate replay of dead letter {replay_of(message)}"
