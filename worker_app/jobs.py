"""Job tracking: a record per on-demand job, its status, progress, result or error — and cancelling it.

Producers enqueue with :func:`enqueue_job` (the HTTP API does); the row is written before the
message is published, so a worker always finds it. The :class:`~worker_app.middleware.jobs.JobTracking`
middleware moves it through ``queued → running → succeeded | failed | deferred | dead`` (back to
``queued`` while a retry waits); a broadcast's job goes on to ``sending`` and ends with the
broadcast (the notifications domain's ``broadcast`` module). Actors report progress with one call::

    from worker_app.jobs import report_progress
    report_progress(processed=500, total=2000, failed=3)

Writes are throttled to one per ``PROGRESS_EVERY_S`` per job (the last one, ``processed == total``,
always goes through). A job cancelled while it runs (:func:`cancel_job`) stops at the next written
report: it raises :class:`~worker_app.errors.JobCancelled`, which is neither retried nor dead.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass
from typing import Any

import dramatiq
import redis
from dramatiq.middleware import CurrentMessage
from sqlalchemy import Select, func, or_, select, text, update
from sqlalchemy.orm import Session

from models import DeadLetter, Job
from worker_app import context
from worker_app.db import Database
from worker_app.dlq import contains
from worker_app.errors import JobCancelled
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


RESULT_STATUSES = {"failed": "failed", "queued": "deferred", "deferred": "deferred"}
"""An actor's ``{"status": ...}`` result -> its job's status (anything else: ``succeeded``).
``queued`` is ``send_notification`` handing the message to ``notification_queue``."""


def status_for_result(result: Any) -> str:
    """The job status an actor's return value stands for."""
    reported = result.get("status") if isinstance(result, dict) else None
    return RESULT_STATUSES.get(reported, "succeeded") if isinstance(reported, str) else "succeeded"


_PROGRESS = text(
    "UPDATE jobs SET progress = CAST(:p AS jsonb) WHERE job_id = :id "
    "RETURNING cancel_requested_at, cancel_requested_by"
)


def report_progress(processed: int, total: int, failed: int = 0, *, throttle: bool = True) -> None:
    """Record the running job's progress (no-op outside a tracked job).

    Raises :class:`JobCancelled` when the job was cancelled and the work is not finished, so the
    actor stops here (a throttled call that writes nothing does not check; ``throttle=False``
    always writes, for an actor whose steps are slow enough to record each).
    """
    message = CurrentMessage.get_current_message()
    if message is None or job_of(message) is None:
        return
    now = time.monotonic()
    with _lock:
        last = _last_write.get(message.message_id, 0.0)
        if throttle and processed < total and now - last < PROGRESS_EVERY_S:
            return
        _last_write[message.message_id] = now
        if processed >= total:
            _last_write.pop(message.message_id, None)
    progress = {"processed": processed, "total": total, "failed": failed}
    with get_runtime().database.transaction() as s:
        cancel = s.execute(_PROGRESS, {"p": json.dumps(progress), "id": message.message_id}).first()
    if cancel is not None and cancel[0] is not None and processed < total:
        with _lock:
            _last_write.pop(message.message_id, None)
        raise JobCancelled(f"cancelled by {cancel[1] or 'unknown'} at {processed}/{total}")


# A job whose work goes on after its message (a broadcast's rows) follows that work with these, in
# the caller's transaction; they never touch a job that is over or was cancelled.
_FOLLOWING = "status IN ('queued', 'running', 'sending')"
_SENDING = text(f"""
    UPDATE jobs SET status = 'sending', result = CAST(:result AS jsonb),
                    progress = coalesce(progress, CAST(:progress AS jsonb))
    WHERE job_id = :id AND {_FOLLOWING}
    RETURNING cancel_requested_at, coalesce(cancel_requested_by, 'unknown')
""")
_FOLLOWED = text(f"""
    UPDATE jobs SET status = 'sending', progress = CAST(:progress AS jsonb)
    WHERE job_id = :id AND {_FOLLOWING}
""")
_SETTLED = text(f"""
    UPDATE jobs SET status = :status, progress = CAST(:progress AS jsonb), result = CAST(:result AS jsonb),
                    error = :error, finished_at = now()
    WHERE job_id = :id AND {_FOLLOWING}
""")


def follow_sending(s: Session, job_id: str, *, result: Any, progress: dict[str, Any]) -> str | None:
    """The job goes on as ``sending`` with ``result`` so far; who asked to cancel it, if anyone did."""
    row = s.execute(_SENDING, {"id": job_id, "result": json.dumps(result), "progress": json.dumps(progress)})
    found = row.first()
    return str(found[1]) if found is not None and found[0] is not None else None


def follow_progress(s: Session, job_id: str, progress: dict[str, Any]) -> None:
    """The ``sending`` job's progress."""
    s.execute(_FOLLOWED, {"id": job_id, "progress": json.dumps(progress)})


def follow_settled(
    s: Session, job_id: str, *, status: str, result: Any, progress: dict[str, Any], error: str | None = None
) -> None:
    """The followed work is over: the job ends with ``status`` and ``result``."""
    params = {"id": job_id, "status": status, "error": error}
    s.execute(_SETTLED, {**params, "result": json.dumps(result), "progress": json.dumps(progress)})


def get_job(database: Database, job_id: str) -> Job | None:
    with database.new_session() as s:
        return s.get(Job, job_id)


def jobs_query(
    *, status: str | None = None, actor: str | None = None, queue: str | None = None, q: str | None = None,
    actor_names: Collection[str] = (),
) -> Select[Job]:  # fmt: skip
    """The jobs matching every filter given. ``q`` (the dashboard's Jobs search) matches a job whose
    id is ``q``, whose actor is one of ``actor_names`` containing ``q``, or whose error contains ``q``
    (case-insensitive). Each part has its index — the primary key, ``ix_jobs_actor_name``, the
    trigram ``ix_jobs_error_search`` — so a search of a million jobs reads only what it finds; a
    substring of the job id is not searched (a trigram index over random ids cost inserts ten times
    as much)."""
    query = select(Job)
    if status:
        query = query.where(Job.status == status)
    if actor:
        query = query.where(Job.actor_name == actor)
    if queue:
        query = query.where(Job.queue_name == queue)
    if q:
        needle = q.casefold()
        named = sorted(name for name in actor_names if needle in name.casefold())
        found_by = [Job.job_id == q.strip(), Job.error.ilike(contains(q), escape="\\")]
        if named:
            found_by.append(Job.actor_name.in_(named))
        query = query.where(or_(*found_by))
    return query


def list_jobs(
    database: Database, *, status: str | None = None, actor: str | None = None, queue: str | None = None,
    q: str | None = None, limit: int = 20,
) -> list[Job]:  # fmt: skip
    """The most recent matching jobs first (:func:`jobs_query`)."""
    query = jobs_query(status=status, actor=actor, queue=queue, q=q).order_by(Job.created_at.desc())
    with database.new_session() as s:
        return list(s.scalars(query.limit(limit)))


def as_dict(job: Job) -> dict[str, Any]:
    data = {c.name: getattr(job, c.name) for c in Job.__table__.columns}
    return {k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in data.items()}


def original_message_id(database: Database, message: Any) -> str:
    """The id of the message ``message`` stands for: its own, or — for a replay of a dead letter
    (``worker-app dlq replay`` stamps ``replay_of``) — the id of the message first sent, through any
    chain of replays. A job that keeps a journal keys it so, and its replay continues it."""
    message_id = str(message.message_id)
    dead_letter_id = message.options.get("replay_of")
    with database.new_session() as s:
        for _ in range(100):  # a chain of replays; bounded against a corrupt cycle
            if not isinstance(dead_letter_id, int) or isinstance(dead_letter_id, bool):
                break
            row = s.get(DeadLetter, dead_letter_id)
            if row is None:
                break
            message_id, dead_letter_id = row.message_id, (row.options or {}).get("replay_of")
    return message_id


def initiator_chat_id(initiated_by: Any) -> int | None:
    """The Telegram chat of the admin who started a job, when ``initiated_by`` names one: a Telegram
    id (``123456``, ``"123456"``) or ``"admin:123456"`` as the admin SPA sends it; else ``None``."""
    if isinstance(initiated_by, int) and not isinstance(initiated_by, bool):
        return initiated_by or None
    if not isinstance(initiated_by, str):
        return None
    value = initiated_by.strip().removeprefix("admin:")
    digits = value.removeprefix("-")
    if not digits.isdigit() or not digits.isascii() or len(digits) > 19 or int(digits) == 0:
        return None
    return int(value)


def cli_user() -> str:
    """``cli:<login>``: who started a job from ``worker-app``."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


CANCELLED = "cancelled"
CANCEL_REQUESTED = "cancel_requested"
BROADCAST_CANCELLED = "broadcast_cancelled"
NOTHING_TO_CANCEL = "nothing_to_cancel"
UNKNOWN = "unknown"


@dataclass(frozen=True)
class CancelResult:
    """What :func:`cancel_job` did (``as_dict()`` is its JSON). ``outcome``:

    * ``cancelled`` — the job had not started (its message is acked unrun when delivered), or it was
      a ``deferred`` send whose queued row was withdrawn (``rows_cancelled`` 1);
    * ``cancel_requested`` — it is running: it stops at its next progress report (a job that reports
      no progress runs to its end);
    * ``broadcast_cancelled`` — ``rows_cancelled`` pending rows were withdrawn; rows being sent
      finish, then it settles and its job is ``cancelled`` (``sending`` until then);
    * ``nothing_to_cancel`` — it is over already (``status`` says how);
    * ``unknown`` — no job and no broadcast has that id.

    ``status`` is the job's status afterwards (None: no jobs row, e.g. a broadcast sent from Python).
    """

    job_id: str
    outcome: str
    status: str | None
    detail: str
    rows_cancelled: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


Canceller = Callable[[Database, str, str, "redis.Redis | None"], "CancelResult | None"]
"""A domain's cancel for what it owns beyond a job's message (a broadcast's rows, a deferred send's
row): ``(database, job_id, by, redis_client)`` → a result, or ``None`` when ``job_id`` is not its."""
Describer = Callable[[Database, str], "str | None"]
"""What a domain's ``job_id`` without a job row is, in one line (``None`` when it is not the domain's)."""
_CANCELLERS: list[Canceller] = []
_DESCRIBERS: list[Describer] = []


def register_canceller(canceller: Canceller, describe: Describer | None = None) -> Canceller:
    """Ask ``canceller`` first in :func:`cancel_job` (a domain registers one when its actors load);
    ``describe`` names, for :func:`describe_job`, what the domain owns that has no job row."""
    if canceller not in _CANCELLERS:
        _CANCELLERS.append(canceller)
    if describe is not None and describe not in _DESCRIBERS:
        _DESCRIBERS.append(describe)
    return canceller


def describe_job(database: Database, job_id: str) -> str | None:
    """What ``job_id`` is, in one line, before it is cancelled: a job with its actor, status and
    progress, or what a domain owns under that id (a broadcast); ``None`` when nothing has it."""
    job = get_job(database, job_id)
    if job is not None:
        progress = job.progress or {}
        done = f", {progress.get('processed')}/{progress.get('total')}" if progress else ""
        by = f", started by {job.initiated_by}" if job.initiated_by else ""
        return f"job {job_id} ({job.actor_name}, {job.status}{done}{by})"
    for describe in _DESCRIBERS:
        found = describe(database, job_id)
        if found is not None:
            return found
    return None


def cancel_job(
    database: Database, job_id: str, *, by: str, redis_client: redis.Redis | None = None
) -> CancelResult:
    """Cancel the job ``job_id`` on behalf of ``by`` (``cli:alice``, ``admin:42``), recorded in
    ``cancel_requested_by``/``cancel_requested_at`` and in the ``error`` text.

    The domains' cancellers (:func:`register_canceller`) are asked first — the notifications domain
    cancels broadcasts (with ``redis_client`` one settles at once when no row is in flight) and
    withdraws deferred sends. Otherwise a ``queued`` job is cancelled outright and a running one
    stops at its next progress report.
    """
    for canceller in _CANCELLERS:
        result = canceller(database, job_id, by, redis_client)
        if result is not None:
            return result
    with database.transaction() as s:
        job = s.get(Job, job_id, with_for_update=True)
        if job is None:
            return CancelResult(job_id, UNKNOWN, None, f"no job or broadcast with id {job_id}")
        if job.status == "queued":
            record_cancel(s, job.job_id, by, status="cancelled", error=f"cancelled by {by} before it started")
            detail = f"job {job.job_id} had not started: cancelled (its message is acked without running)"
            return CancelResult(job.job_id, CANCELLED, "cancelled", detail)
        if job.status in ("running", "sending"):
            record_cancel(s, job.job_id, by)
            detail = f"job {job.job_id} is running: it stops at its next progress report"
            return CancelResult(job.job_id, CANCEL_REQUESTED, job.status, detail)
        detail = f"job {job.job_id} is {job.status}: nothing to cancel"
        return CancelResult(job.job_id, NOTHING_TO_CANCEL, job.status, detail)


def record_cancel(
    s: Session, job_id: str, by: str, *, status: str | None = None, error: str | None = None
) -> None:
    """Record who cancelled and when (the first request wins); with ``status``, the job ends so."""
    values: dict[str, Any] = {
        "cancel_requested_at": func.coalesce(Job.cancel_requested_at, func.now()),
        "cancel_requested_by": func.coalesce(Job.cancel_requested_by, by),
    }
    if status is not None:
        values.update(status=status, error=error, finished_at=func.now())
    s.execute(update(Job).where(Job.job_id == job_id).values(**values))
