"""The producing half of "each fire at most once", shared by the scheduler and ``schedules run``.

One transaction on the caller's connection (the leader's lock connection, so a scheduler that has
lost its lock cannot fire):

1. if the job's previous message has not started yet (and is younger than
   ``SCHEDULER_PENDING_STALE_S``), the slot is recorded ``skipped`` — no pile-up behind a backlog;
2. otherwise the row (job, slot) is inserted ``enqueued`` with the new message's id and trace id,
   the message is published with a publisher confirm, and the transaction commits.

A row that already exists means another process fired the slot: nothing is published. A crash
between the publish and the commit leaves a message without a row; if a standby then fires the same
slot again, the worker's :class:`~worker_app.middleware.scheduled.ScheduledFires` runs only one.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import dramatiq
import psycopg
from sqlalchemy.engine import make_url

from worker_app import context

Outcome = Literal["enqueued", "skipped", "duplicate"]

_PENDING = """
    SELECT scheduled_at, message_id FROM scheduler_fires
    WHERE job = %(job)s AND status = 'enqueued' AND scheduled_at <> %(at)s
      AND fired_at > now() - make_interval(secs => %(stale_s)s)
    ORDER BY scheduled_at DESC LIMIT 1
"""
_INSERT = """
    INSERT INTO scheduler_fires (job, scheduled_at, kind, status, reason, message_id, trace_id, fired_by)
    VALUES (%(job)s, %(at)s, %(kind)s, %(status)s, %(reason)s, %(message_id)s, %(trace_id)s, %(fired_by)s)
    ON CONFLICT (job, scheduled_at) DO NOTHING
    RETURNING 1
"""


@dataclass(frozen=True)
class FireResult:
    """What became of one fire."""

    job: str
    scheduled_at: datetime
    kind: str
    outcome: Outcome
    reason: str | None = None
    message_id: str | None = None
    trace_id: str | None = None
    queue: str | None = None


def process_name() -> str:
    """``host:pid``, as recorded in ``fired_by`` and in the lock connection's application_name."""
    return f"{socket.gethostname()}:{os.getpid()}"


def conninfo(database_url: str) -> str:
    """A libpq connection string for the SQLAlchemy ``DATABASE_URL``."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


def fire(
    conn: psycopg.Connection[Any],
    actor: dramatiq.Actor[..., Any],
    job: str,
    at: datetime,
    *,
    kind: str,
    fired_by: str,
    pending_stale_s: int,
) -> FireResult:
    """Enqueue ``actor`` for the slot (job, at) at most once; see the module docstring."""
    params: dict[str, Any] = {
        "job": job,
        "at": at,
        "kind": kind,
        "fired_by": fired_by,
        "stale_s": pending_stale_s,
    }
    with conn.transaction():
        pending = conn.execute(_PENDING, params).fetchone()
        if pending is not None:
            waiting_at, waiting_id = pending
            reason = f"previous fire {waiting_at.isoformat()} (message {waiting_id}) has not started yet"
            params.update(status="skipped", reason=reason, message_id=None, trace_id=None)
            inserted = conn.execute(_INSERT, params).fetchone()
            outcome: Outcome = "skipped" if inserted else "duplicate"
            return FireResult(job, at, kind, outcome, reason if inserted else "already fired")
        trace_id = context.new_trace_id()
        message = actor.message_with_options(
            scheduled={"job": job, "at": at.isoformat(), "kind": kind}, trace_id=trace_id
        )
        params.update(status="enqueued", reason=None, message_id=message.message_id, trace_id=trace_id)
        if conn.execute(_INSERT, params).fetchone() is None:
            return FireResult(job, at, kind, "duplicate", "already fired")
        actor.broker.enqueue(message)
    return FireResult(job, at, kind, "enqueued", None, message.message_id, trace_id, actor.queue_name)


_BACKFILL = """
    INSERT INTO scheduler_fires (job, scheduled_at, kind, status, reason, message_id, trace_id, fired_by)
    VALUES (%(job)s, %(at)s, 'backfill', 'enqueued', NULL, %(message_id)s, %(trace_id)s, %(fired_by)s)
    ON CONFLICT (job, scheduled_at) DO UPDATE
        SET kind = 'backfill', status = 'enqueued', reason = NULL, message_id = excluded.message_id,
            trace_id = excluded.trace_id, fired_by = excluded.fired_by, fired_at = now()
        WHERE scheduler_fires.status = 'skipped'
    RETURNING 1
"""


def backfill(
    conn: psycopg.Connection[Any], actor: dramatiq.Actor[..., Any], job: str, at: datetime, *, fired_by: str
) -> FireResult:
    """Enqueue ``actor`` for the slot (job, at) unless that slot ran or was enqueued already: a slot
    with no row, or one recorded ``skipped`` (missed, held back by a pending fire, no consumer), is
    fired now with kind ``backfill``; the row is the same one the scheduler keys its fires by, so a
    slot is enqueued once however often a backfill runs. No no-pile-up check: an operator backfills
    several slots on purpose."""
    trace_id = context.new_trace_id()
    message = actor.message_with_options(
        scheduled={"job": job, "at": at.isoformat(), "kind": "backfill"}, trace_id=trace_id
    )
    params = {"job": job, "at": at, "message_id": message.message_id, "trace_id": trace_id,
              "fired_by": fired_by}  # fmt: skip
    with conn.transaction():
        if conn.execute(_BACKFILL, params).fetchone() is None:
            return FireResult(job, at, "backfill", "duplicate", "already fired")
        actor.broker.enqueue(message)
    return FireResult(job, at, "backfill", "enqueued", None, message.message_id, trace_id, actor.queue_name)


def record_skip(
    conn: psycopg.Connection[Any], job: str, at: datetime, *, kind: str, reason: str, fired_by: str
) -> bool:
    """Record the slot (job, at) as skipped without firing it; ``False`` if the slot already has a row."""
    params = {
        "job": job,
        "at": at,
        "kind": kind,
        "status": "skipped",
        "reason": reason,
        "message_id": None,
        "trace_id": None,
        "fired_by": fired_by,
    }
    return conn.execute(_INSERT, params).fetchone() is not None
