"""Job tracking (see :mod:`worker_app.jobs`): moves a tracked message's ``jobs`` row through its
statuses, and skips the message of a job cancelled before it started. Only messages carrying the
``job`` option are touched; a database error is logged and never fails the message.

Each write only moves a job on from the statuses it can come from: a cancelled job stays cancelled,
and a broadcast's job, which follows its broadcast from ``sending`` on, is left to it."""

from __future__ import annotations

import json
import logging
from typing import Any

import dramatiq
from dramatiq.middleware import SkipMessage
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from worker_app import outcome
from worker_app.db import Database
from worker_app.errors import JobCancelled
from worker_app.jobs import job_of, status_for_result

log = logging.getLogger(__name__)

_RUNNING = text("""
    UPDATE jobs SET status = CASE WHEN status = 'sending' THEN status ELSE 'running' END,
                    started_at = coalesce(started_at, now()), attempts = attempts + 1
    WHERE job_id = :id AND status <> 'cancelled'
    RETURNING 1
""")
_STATUS = text("SELECT status FROM jobs WHERE job_id = :id")
_FINISHED = text("""
    UPDATE jobs SET status = :status, result = CAST(:result AS jsonb), error = NULL, finished_at = now()
    WHERE job_id = :id AND status IN ('queued', 'running')
""")
_CANCELLED = text("""
    UPDATE jobs SET status = 'cancelled', error = :error, finished_at = now()
    WHERE job_id = :id AND status IN ('queued', 'running')
""")
_FAILED_ATTEMPT = text("""
    UPDATE jobs SET status = CASE WHEN status = 'sending' THEN status ELSE 'queued' END, error = :error
    WHERE job_id = :id AND status IN ('queued', 'running', 'sending')
""")
_DEAD = text("""
    UPDATE jobs SET status = CASE WHEN status = 'sending' THEN status ELSE 'dead' END,
                    finished_at = CASE WHEN status = 'sending' THEN finished_at ELSE now() END,
                    error = coalesce(:error, error)
    WHERE job_id = :id AND status IN ('queued', 'running', 'sending')
""")


def _json(value: Any) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return json.dumps(repr(value))


class JobTracking(dramatiq.Middleware):
    """queued → running → succeeded / failed / deferred / cancelled / dead (back to queued while a
    retry waits); a job cancelled while queued is skipped: acked without running, never retried."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def _write(self, statement: Any, **params: Any) -> Any:
        try:
            with self.database.engine.begin() as conn:
                return conn.execute(statement, params)
        except SQLAlchemyError as e:
            log.warning("job %s: status not recorded: %s", params.get("id"), type(e).__name__)
            return None

    def _cancelled(self, message_id: str) -> bool:
        """Mark the job running; True if it was cancelled before it started (nothing is marked)."""
        try:
            with self.database.engine.begin() as conn:
                if conn.execute(_RUNNING, {"id": message_id}).first() is not None:
                    return False
                return conn.execute(_STATUS, {"id": message_id}).scalar() == "cancelled"
        except SQLAlchemyError as e:
            log.warning("job %s: status not recorded: %s", message_id, type(e).__name__)
            return False

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        if job_of(message) is not None and self._cancelled(message.message_id):
            # SkipMessage on a message that is not failed: the consumer acks it, no retry, no dead letter
            outcome.set_outcome(outcome.SKIPPED)
            raise SkipMessage(f"job {message.message_id} was cancelled before it started")

    def after_process_message(
        self, broker: dramatiq.Broker, message: Any, *, result: Any = None, exception: Any = None
    ) -> None:
        if job_of(message) is None:
            return
        if exception is None:
            status = status_for_result(result)
            self._write(_FINISHED, id=message.message_id, status=status, result=_json(result))
        elif isinstance(exception, JobCancelled):
            self._write(_CANCELLED, id=message.message_id, error=str(exception))
        else:
            self._write(
                _FAILED_ATTEMPT, id=message.message_id, error=f"{type(exception).__name__}: {exception}"
            )

    def after_nack(self, broker: dramatiq.Broker, message: Any) -> None:
        if job_of(message) is not None:
            exception = getattr(message, "_exception", None)
            error = f"{type(exception).__name__}: {exception}" if exception is not None else None
            self._write(_DEAD, id=message.message_id, error=error)
