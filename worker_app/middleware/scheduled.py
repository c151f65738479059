"""The consuming half of "each fire at most once": a scheduled message claims its (job, time).

The scheduler stamps every periodic message with the option ``scheduled = {"job", "at", "kind"}``.
Before the actor runs, :class:`ScheduledFires` upserts the fire's row in ``scheduler_fires`` as
``started`` by this message id (see :mod:`worker_app.middleware.once` for the rules). The ``started``
mark is also what the scheduler's no-pile-up rule reads: a job whose last message has not started
is not enqueued again.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import dramatiq
from sqlalchemy import text

from worker_app.db import Database
from worker_app.lazy import created_once
from worker_app.middleware.once import RunOnce

log = logging.getLogger(__name__)

FIRE_KINDS = ("scheduled", "catch_up", "immediate", "manual")

_CLAIM = text("""
    INSERT INTO scheduler_fires
        (job, scheduled_at, kind, status, message_id, fired_by, started_at, started_message_id)
    VALUES (:job, :at, :kind, 'started', :message_id, 'worker (no scheduler row)', now(), :message_id)
    ON CONFLICT (job, scheduled_at) DO UPDATE
        SET status = 'started',
            started_at = coalesce(scheduler_fires.started_at, now()),
            started_message_id = excluded.started_message_id
        WHERE scheduler_fires.started_message_id IS NULL
           OR scheduler_fires.started_message_id = excluded.started_message_id
    RETURNING 1
""")
_COUNT_DUPLICATE = text("""
    UPDATE scheduler_fires SET duplicates_dropped = duplicates_dropped + 1
    WHERE job = :job AND scheduled_at = :at
    RETURNING started_message_id
""")


@created_once
def _duplicates_metric() -> Any:
    import prometheus_client as prom

    return prom.Counter(
        "cybervpn_scheduler_duplicates_dropped",
        "Scheduled messages skipped because another message already ran the same (job, time).",
        ("job",),
    )


def fire_of(message: dramatiq.Message[Any]) -> tuple[str, datetime, str] | None:
    """``(job, scheduled time, kind)`` of a scheduled message, or ``None``."""
    fire = message.options.get("scheduled")
    if not isinstance(fire, dict):
        return None
    try:
        at = datetime.fromisoformat(str(fire["at"]))
    except (KeyError, ValueError):
        return None
    kind = str(fire.get("kind") or "scheduled")
    return str(fire.get("job") or message.actor_name), at, kind if kind in FIRE_KINDS else "scheduled"


def claim_fire(database: Database, job: str, at: datetime, kind: str, message_id: str) -> bool:
    """Mark (job, at) started by ``message_id``; ``False`` when another message already started it."""
    params = {"job": job, "at": at, "kind": kind, "message_id": message_id}
    with database.engine.begin() as conn:
        if conn.execute(_CLAIM, params).first() is not None:
            return True
        conn.execute(_COUNT_DUPLICATE, params)
    return False


class ScheduledFires(RunOnce):
    """Claims each scheduled message's (job, time) before it runs; skips duplicates."""

    def claim(self, message: Any) -> bool | None:
        fire = fire_of(message)
        if fire is None:
            return None
        return claim_fire(self.database, *fire, message.message_id)

    def on_duplicate(self, message: Any) -> str:
        fire = fire_of(message)
        assert fire is not None
        job, at = fire[0], fire[1].isoformat()
        log.warning("duplicate fire dropped: %s @ %s already ran as another message", job, at,
                    extra={"job": job, "scheduled_at": at})  # fmt: skip
        _duplicates_metric().labels(job).inc()
        return f"duplicate fire of {job} @ {at}"
