"""Job tracking: a record per on-demand job, its status, progress, result or error.

Producers enqueue with :func:`enqueue_job` (the HTTP API does); the row is written before the
message is published, so a worker always finds it. The :class:`~worker_app.middleware.jobs.JobTracking`
middleware moves it through ``queued → running → succeeded | failed | dead`` (back to ``queued``
while a retry waits). Actors report progress with one call::

    from worker_app.jobs import report_progress
    report_progress(processed=500, total=2000, failed=3)

Writes are throttled to one per ``PROGRESS_EVERY_S`` per job (the last one, ``processed == total``,
always goes through).
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import dramatiq
from dramatiq.middleware import CurrentMessage
from sqlalchemy import select, text, update

from models import Job
from worker_app import context
from worker_app.db import Database
from worker_app.runtime import get_runtime

PROGRESS_EVERY_S = 0.5
_last_write: dict[str, float] = {}
_lock = threading.Lock()


def job_of(message: Any) -> dict[str, Any] | None:
    job = message.options.get("job")
    return job if isinstance(job, dict) else None


def enqueue_job(
    database: Database,
    actor: dramatiq.Actor[..., Any],
    args: tuple[Any, ...] | list[Any] = (),
    kwargs: dict[str, Any] | None = None,
    *,
    initiated_by: str | None = None,
    trace_id: str | None = None,
) -> dramatiq.Message[Any]:
    """Record a ``queued`` job and enqueue its message; returns the message (its id is the job id)."""
    trace = trace_id or context.current_trace_id() or context.new_trace_id()
    message = actor.message_with_options(
        args=tuple(args), kwargs=kwargs or {}, job={"initiated_by": initiated_by}, trace_id=trace
    )
    with database.transaction() as s:
        s.add(
            Job(
                job_id=message.message_id, actor_name=actor.actor_name, queue_name=actor.queue_name,
                args=list(message.args), kwargs=dict(message.kwargs), status="queued",
                initiated_by=initiated_by, trace_id=trace,
            )
        )  # fmt: skip
    try:
        actor.broker.enqueue(message)
    except Exception as e:
        with database.transaction() as s:
            s.execute(
                update(Job).where(Job.job_id == message.message_id)
                .values(status="failed", error=f"could not enqueue: {type(e).__name__}: {e}")
            )  # fmt: skip
        raise
    return message


def report_progress(processed: int, total: int, failed: int = 0) -> None:
    """Record the running job's progress (no-op outside a tracked job)."""
    message = CurrentMessage.get_current_message()
    if message is None or job_of(message) is None:
        return
    now = time.monotonic()
    with _lock:
        last = _last_write.get(message.message_id, 0.0)
        if processed < total and now - last < PROGRESS_EVERY_S:
            return
        _last_write[message.message_id] = now
        if processed >= total:
            _last_write.pop(message.message_id, None)
    progress = {"processed": processed, "total": total, "failed": failed}
    with get_runtime().database.transaction() as s:
        s.execute(
            text("UPDATE jobs SET progress = CAST(:p AS jsonb) WHERE job_id = :id"),
            {"p": json.dumps(progress), "id": message.message_id},
        )


def get_job(database: Database, job_id: str) -> Job | None:
    with database.new_session() as s:
        return s.get(Job, job_id)


def list_jobs(
    database: Database, *, status: str | None = None, actor: str | None = None, limit: int = 20
) -> list[Job]:
    query = select(Job).order_by(Job.created_at.desc()).limit(limit)
    if status:
        query = query.where(Job.status == status)
    if actor:
        query = query.where(Job.actor_name == actor)
    with database.new_session() as s:
        return list(s.scalars(query))


def as_dict(job: Job) -> dict[str, Any]:
    data = {c.name: getattr(job, c.name) for c in Job.__table__.columns}
    return {k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in data.items()}


def cli_user() -> str:
    """``cli:<login>``: who started a job from ``worker-app``."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"
