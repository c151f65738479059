"""Job tracking (see :mod:`worker_app.jobs`): moves a tracked message's ``jobs`` row through its
statuses. Only messages carrying the ``job`` option are touched; a database error is logged and
never fails the message."""

from __future__ import annotations

import json
import logging
from typing import Any

import dramatiq
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from worker_app.db import Database
from worker_app.jobs import job_of

log = logging.getLogger(__name__)

_RUNNING = text("""
    UPDATE jobs SET status = 'running', started_at = coalesce(started_at, now()), attempts = attempts + 1
    WHERE job_id = :id
""")
_FINISHED = text("""
    UPDATE jobs SET status = :status, result = CAST(:result AS jsonb), error = NULL, finished_at = now()
    WHERE job_id = :id
""")
_FAILED_ATTEMPT = text(
    "UPDATE jobs SET status = 'queued', error = :error WHERE job_id = :id AND status <> 'dead'"
)
_DEAD = text(
    "UPDATE jobs SET status = 'dead', finished_at = now(), error = coalesce(:error, error) WHERE job_id = :id"
)


def _json(value: Any) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return json.dumps(repr(value))


class JobTracking(dramatiq.Middleware):
    """queued → running → succeeded / failed / dead (back to queued while a retry waits)."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def _write(self, statement: Any, **params: Any) -> None:
        try:
            with self.database.engine.begin() as conn:
                conn.execute(statement, params)
        except SQLAlchemyError as e:
            log.warning("job %s: status not recorded: %s", params.get("id"), type(e).__name__)

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        if job_of(message) is not None:
            self._write(_RUNNING, id=message.message_id)

    def after_process_message(
        self, broker: dramatiq.Broker, message: Any, *, result: Any = None, exception: Any = None
    ) -> None:
        if job_of(message) is None:
            return
        if exception is None:
            failed = isinstance(result, dict) and result.get("status") == "failed"
            self._write(_FINISHED, id=message.message_id, status="failed" if failed else "succeeded",
                        result=_json(result))  # fmt: skip
        else:
            self._write(
                _FAILED_ATTEMPT, id=message.message_id, error=f"{type(exception).__name__}: {exception}"
            )

    def after_nack(self, broker: dramatiq.Broker, message: Any) -> None:
        if job_of(message) is not None:
            exception = getattr(message, "_exception", None)
            error = f"{type(exception).__name__}: {exception}" if exception is not None else None
            self._write(_DEAD, id=message.message_id, error=error)
