"""Broadcasts: one message to many chats, as ``notification_queue`` rows the queue consumer sends.

:func:`create_broadcast` de-duplicates the chat ids and inserts every row in batched INSERTs, in
one transaction together with the worker's own ``notification_broadcasts`` row whose id is the
Dramatiq message id — so a redelivered ``broadcast_message`` inserts nothing twice.

Progress lives in the Redis hash ``cybervpn:broadcast:<id>`` (``total``, ``sent``, ``failed``,
``pending``, ``status`` = ``sending`` | ``settled``, ``created_at``, ``duration_seconds``; kept
7 days). :func:`refresh_progress` recomputes it from the rows themselves (never from counters that a
crash could skew) after every batch that touched the broadcast; the call that finds no row pending
any more writes the final report — ``{sent, failed, total, duration_seconds}`` — once.

**Redis down: progress updates are skipped**, with one warning per process (and one info when
Redis is back); sending goes on. The rows stay the truth, so the first refresh after the outage
writes correct figures. A broadcast is only marked settled in the same transaction that wrote its
final report to Redis, so a report Redis did not take is written by a later refresh (the next
drain's, which refreshes every unsettled broadcast) instead of never.

**The broadcast's job** (when it was enqueued with :func:`worker_app.jobs.enqueue_job`; the job id is
the broadcast id) follows it, in the same transactions: ``sending`` from the commit of its rows,
``progress`` = ``{processed, total, sent, failed, cancelled}`` after every refresh, and once settled
``succeeded`` (``failed`` when no row could be sent, ``cancelled`` when it was cancelled) with the
final report as ``result``. A broadcast without a job row updates nothing.

**Cancelling** (:func:`cancel_broadcast`, from ``worker-app jobs cancel``) marks it ``cancelled_at``;
from then on no drain claims its rows, and every pending row not locked by a drain at that moment
is marked ``failed`` with ``error_message`` "cancelled by <who>" and counted in ``cancelled`` (rows
a drain is sending finish, and any that come back pending are withdrawn by the next refresh). It
settles as soon as none is pending, with ``cancelled`` in its report.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import dramatiq
import redis
from pydantic import Field
from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from actors.notifications import queue as notification_queue
from actors.notifications.broadcast_cancel import cancel_broadcast, withdraw_cancelled
from actors.notifications.on_demand import sendable
from models.notifications import NotificationBroadcast
from worker_app import jobs
from worker_app.arguments import checked_by
from worker_app.context import current_message_id, current_trace_id
from worker_app.db import Database
from worker_app.errors import BadMessage
from worker_app.policies import Alert
from worker_app.redis_client import key
from worker_app.redis_fallback import RedisFallback
from worker_app.runtime import get_runtime
from worker_app.telegram.text import (
    ChatId,
    MessageText,
    NotificationRejected,
    NotificationType,
    ParseMode,
    check_chat_id,
    check_text,
    check_type,
)

QUEUE = "notifications"
log = logging.getLogger(__name__)
#: When a scheduled broadcast starts: an ISO 8601 time (checked by :func:`start_time`).
ScheduledAt = Annotated[str | None, Field(min_length=1, max_length=64)]

_FALLBACKS: weakref.WeakKeyDictionary[redis.Redis, RedisFallback] = weakref.WeakKeyDictionary()
_FALLBACKS_LOCK = threading.Lock()


def _redis_state(client: redis.Redis) -> RedisFallback:
    """The progress writes' Redis state, one per client (the process has one: its runtime's)."""
    with _FALLBACKS_LOCK:
        state = _FALLBACKS.get(client)
        if state is None:
            state = _FALLBACKS[client] = RedisFallback(
                "broadcast progress", "progress updates skipped (the rows keep the counts)"
            )
        return state


INSERT_CHUNK = 1000
PROGRESS_TTL_S = 7 * 86_400

_INSERT_ROWS = text(
    """
    WITH inserted AS (
        INSERT INTO notification_queue (telegram_id, message, notification_type, parse_mode, scheduled_at)
        SELECT unnest(CAST(:telegram_ids AS bigint[])), :message, :notification_type, :parse_mode,
               coalesce(CAST(:scheduled_at AS timestamptz), now())
        RETURNING id
    )
    INSERT INTO notification_broadcast_items (notification_id, broadcast_id)
    SELECT id, :broadcast_id FROM inserted
    """
)
_COUNTS = text(  # failed rows include the cancelled ones; the same snapshot counts both
    """
    SELECT b.id,
           count(*) FILTER (WHERE n.status = 'sent'),
           count(*) FILTER (WHERE n.status = 'failed'),
           count(*) FILTER (WHERE n.status = 'pending'),
           b.cancelled
    FROM notification_broadcasts AS b
    JOIN notification_broadcast_items AS i ON i.broadcast_id = b.id
    JOIN notification_queue AS n ON n.id = i.notification_id
    WHERE b.id = ANY(CAST(:ids AS text[]))
    GROUP BY b.id
    """
)
_SETTLE = text(
    """
    UPDATE notification_broadcasts SET settled_at = now(), sent = :sent, failed = :failed
    WHERE id = :id AND settled_at IS NULL
    RETURNING total, extract(epoch FROM settled_at - created_at)::float8, cancelled_by
    """
)


def progress_key(broadcast_id: str) -> str:
    """Redis hash holding a broadcast's progress and, once settled, its report."""
    return key("broadcast", broadcast_id)


@dataclass(frozen=True)
class BroadcastCreated:
    """The outcome of :func:`create_broadcast`; ``created`` is False for a redelivered broadcast."""

    broadcast_id: str
    total: int
    duplicates_removed: int
    created: bool

    def summary(self) -> dict[str, Any]:
        """What ``broadcast_message`` returns (and its job shows while sending)."""
        return {
            "broadcast_id": self.broadcast_id, "total": self.total,
            "duplicates_removed": self.duplicates_removed, "progress_key": progress_key(self.broadcast_id),
        }  # fmt: skip


def unique_chat_ids(telegram_ids: Iterable[Any]) -> list[int]:
    """The ids as ints, first occurrence kept; a non-integer id is a :class:`BadMessage`."""
    if isinstance(telegram_ids, str | bytes) or not isinstance(telegram_ids, Iterable):
        raise BadMessage(f"telegram_ids must be a list of chat ids, got {type(telegram_ids).__name__}")
    seen: dict[int, None] = {}
    for position, value in enumerate(telegram_ids):
        seen.setdefault(check_chat_id(value, f"telegram_ids[{position}]"), None)
    if not seen:
        raise BadMessage("telegram_ids is empty")
    return list(seen)


def create_broadcast(
    session: Session,
    broadcast_id: str,
    telegram_ids: Sequence[int],
    *,
    message: str,
    notification_type: str,
    parse_mode: str | None,
    duplicates_removed: int = 0,
    trace_id: str | None = None,
    scheduled_at: datetime | None = None,
) -> BroadcastCreated:
    """Insert the broadcast and its rows (in the caller's transaction), unless it exists already.

    Its job row (if any) becomes ``sending`` in the same transaction; a cancel requested while this
    ran cancels the broadcast at once (its rows are withdrawn by the next refresh, before any send).
    """
    created = session.execute(
        insert(NotificationBroadcast)
        .values(
            id=broadcast_id,
            notification_type=notification_type,
            total=len(telegram_ids),
            duplicates_removed=duplicates_removed,
            trace_id=trace_id,
            starts_at=scheduled_at,
        )
        .on_conflict_do_nothing()
        .returning(NotificationBroadcast.id)
    ).first()
    if created is None:
        existing = session.get_one(NotificationBroadcast, broadcast_id)
        again = BroadcastCreated(broadcast_id, existing.total, existing.duplicates_removed, created=False)
        if existing.settled_at is None:
            _job_sending(session, again)
        else:
            _job_settled(session, _report_of(existing, existing.settled_at), existing.cancelled_by)
        return again
    for start in range(0, len(telegram_ids), INSERT_CHUNK):
        session.execute(
            _INSERT_ROWS,
            {
                "telegram_ids": list(telegram_ids[start : start + INSERT_CHUNK]),
                "message": message, "notification_type": notification_type,
                "parse_mode": parse_mode, "broadcast_id": broadcast_id, "scheduled_at": scheduled_at,
            },
        )  # fmt: skip
    outcome = BroadcastCreated(broadcast_id, len(telegram_ids), duplicates_removed, created=True)
    _job_sending(session, outcome)
    return outcome


def _job_sending(session: Session, created: BroadcastCreated) -> None:
    """The job shows ``sending``; a cancel requested while the actor ran cancels the broadcast."""
    progress = _job_progress(sent=0, failed=0, cancelled=0, pending=created.total)
    by = jobs.follow_sending(session, created.broadcast_id, result=created.summary(), progress=progress)
    if by is not None:
        cancel_broadcast(session, created.broadcast_id, by=by)


def _job_progress(*, sent: int, failed: int, cancelled: int, pending: int) -> dict[str, int]:
    done = sent + failed + cancelled
    return {
        "processed": done, "total": done + pending, "sent": sent, "failed": failed, "cancelled": cancelled,
    }  # fmt: skip


def _job_settled(session: Session, report: dict[str, Any], cancelled_by: str | None) -> None:
    """The job ends with the broadcast's report: cancelled, failed (no row sent) or succeeded."""
    sent, failed, cancelled = report["sent"], report["failed"], report["cancelled"]
    if cancelled_by is not None and report["cancelled"] > 0:  # (a cancel after every row was sent: sent)
        status, error = "cancelled", f"cancelled by {cancelled_by}"
    elif sent == 0 and failed > 0:
        status, error = "failed", f"no row could be sent ({failed} failed)"
    else:
        status, error = "succeeded", None
    progress = _job_progress(sent=sent, failed=failed, cancelled=cancelled, pending=0)
    jobs.follow_settled(
        session, report["broadcast_id"], status=status, error=error, result=report, progress=progress
    )


def _report_of(broadcast: NotificationBroadcast, settled_at: datetime) -> dict[str, Any]:
    """The final report of a broadcast settled at ``settled_at``, from its row."""
    return {
        "broadcast_id": broadcast.id, "sent": broadcast.sent or 0, "failed": broadcast.failed or 0,
        "cancelled": broadcast.cancelled, "total": broadcast.total,
        "duration_seconds": round((settled_at - broadcast.created_at).total_seconds(), 3),
    }  # fmt: skip


def refresh_progress(
    database: Database, client: redis.Redis, broadcast_ids: Iterable[str]
) -> list[dict[str, Any]]:
    """Recompute the progress of ``broadcast_ids`` from their rows; settle those with none pending.

    Pending rows of a cancelled broadcast are withdrawn first. Each broadcast's job follows it in
    the same transaction. Returns the reports of the broadcasts this call settled (none while Redis
    is unreachable: then only the jobs' progress is written).
    """
    ids = sorted(set(broadcast_ids))
    if not ids:
        return []
    withdraw_cancelled(database, ids)
    try:
        with database.transaction() as session:
            progress, reports = _recount(session, ids)
            # Written before the commit of the settlements: a report Redis refused rolls its
            # settlement back. The rows themselves are already committed, so Redis never runs
            # ahead of them; a commit failing now only means the next refresh writes it again.
            if not _redis_state(client).run(lambda: _write_all(client, progress), lambda: False):
                raise _Unpublished
    except _Unpublished:
        _follow_progress(database, progress)
        return []
    for report in reports:
        log.info("broadcast %s settled: %s", report["broadcast_id"], report)
    return reports


class _Unpublished(Exception):
    """Redis did not take the progress: roll back the settlements recorded with it."""


def _recount(session: Session, ids: list[str]) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """Each broadcast's progress entry from its rows; settles (in ``session``) those with none pending,
    and brings their jobs up to date."""
    progress: dict[str, dict[str, Any]] = {}
    reports = []
    for broadcast_id, sent, failed_rows, pending, cancelled in session.execute(_COUNTS, {"ids": ids}).all():
        failed = failed_rows - cancelled
        entry = progress[broadcast_id] = {
            "total": sent + failed_rows + pending, "sent": sent, "failed": failed, "cancelled": cancelled,
            "pending": pending, "status": "settled" if pending == 0 else "sending",
        }  # fmt: skip
        settled = None
        if pending == 0:
            settled = session.execute(_SETTLE, {"id": broadcast_id, "sent": sent, "failed": failed}).first()
        if settled is None:
            jobs.follow_progress(session, broadcast_id, _progress_of(entry))
            continue
        entry["duration_seconds"] = round(settled[1], 3)
        report = {
            "broadcast_id": broadcast_id, "sent": sent, "failed": failed, "cancelled": cancelled,
            "total": settled[0], "duration_seconds": entry["duration_seconds"],
        }  # fmt: skip
        reports.append(report)
        _job_settled(session, report, settled[2])
    return progress, reports


def _follow_progress(database: Database, progress: dict[str, dict[str, Any]]) -> None:
    """The jobs' progress alone (Redis refused the settlements, which were rolled back)."""
    with database.transaction() as session:
        for broadcast_id, entry in progress.items():
            jobs.follow_progress(session, broadcast_id, _progress_of(entry))


def _progress_of(entry: dict[str, Any]) -> dict[str, int]:
    return _job_progress(
        sent=entry["sent"], failed=entry["failed"], cancelled=entry["cancelled"], pending=entry["pending"]
    )


def get_broadcast(database: Database, broadcast_id: str) -> NotificationBroadcast | None:
    """The worker's record of a broadcast (None when there is none with that id)."""
    with database.new_session() as session:
        return session.get(NotificationBroadcast, broadcast_id)


def unsettled(database: Database) -> list[str]:
    """Ids of broadcasts not settled yet (a drain that crashed may have skipped their refresh)."""
    with database.transaction() as session:
        query = text("SELECT id FROM notification_broadcasts WHERE settled_at IS NULL")
        return [str(r[0]) for r in session.execute(query)]


def start_progress(client: redis.Redis, created: BroadcastCreated, created_at: float) -> None:
    """The first progress entry: every row pending (skipped while Redis is unreachable). Fields a
    refresh wrote first (a broadcast cancelled, or drained, before this runs) are kept."""
    entry = {
        "total": created.total, "sent": 0, "failed": 0, "pending": created.total, "status": "sending",
        "duplicates_removed": created.duplicates_removed, "created_at": round(created_at, 3),
    }  # fmt: skip
    _redis_state(client).run(
        lambda: _write_progress(client, created.broadcast_id, entry, only_missing=True), lambda: None
    )


def read_progress(client: redis.Redis, broadcast_id: str) -> dict[str, str]:
    """The progress hash of ``broadcast_id`` (empty when unknown or expired)."""
    return dict(client.hgetall(progress_key(broadcast_id)))  # type: ignore[arg-type]


def _write_all(client: redis.Redis, progress: dict[str, dict[str, Any]]) -> bool:
    for broadcast_id, entry in progress.items():
        _write_progress(client, broadcast_id, entry)
    return True


def _write_progress(
    client: redis.Redis, broadcast_id: str, fields: dict[str, Any], *, only_missing: bool = False
) -> None:
    name = progress_key(broadcast_id)
    pipe = client.pipeline()
    if only_missing:
        for field, value in fields.items():
            pipe.hsetnx(name, field, str(value))
    else:
        pipe.hset(name, mapping={k: str(v) for k, v in fields.items()})
    pipe.expire(name, PROGRESS_TTL_S)
    pipe.execute()


#: The furthest ahead a broadcast can be scheduled.
MAX_SCHEDULE_AHEAD = timedelta(days=366)


def start_time(value: str | None, now: datetime | None = None) -> datetime | None:
    """``scheduled_at`` as an aware time (UTC unless it names an offset); ``None`` for none or a time
    already past (the broadcast goes at once). A time that is not ISO 8601, or over a year ahead,
    is a :class:`NotificationRejected` naming it."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise NotificationRejected(f"scheduled_at: expected an ISO 8601 time, not {value[:64]!r}") from None
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    now = now or datetime.now(UTC)
    if moment - now > MAX_SCHEDULE_AHEAD:
        raise NotificationRejected(f"scheduled_at: {moment.isoformat()} is more than 366 days ahead")
    return moment if moment > now else None


def broadcastable(arguments: dict[str, Any]) -> None:
    """The text is sendable, the distinct chat ids fit BROADCAST_MAX_RECIPIENTS and ``scheduled_at``
    (if any) is a time within a year."""
    sendable(arguments)
    start_time(arguments.get("scheduled_at"))
    cap = get_runtime().settings.broadcast_max_recipients
    ids = arguments["telegram_ids"]
    if len(ids) > cap and len(set(ids)) > cap:
        raise NotificationRejected(
            f"telegram_ids: {len(set(ids))} distinct chat ids, more than BROADCAST_MAX_RECIPIENTS ({cap}); "
            "split the audience, or use a bulk operation"
        )


@dramatiq.actor(queue_name=QUEUE, store_results=True, when_exhausted=Alert("warning"))
@checked_by(broadcastable)
def broadcast_message(
    telegram_ids: Annotated[list[ChatId], Field(min_length=1)],
    message: MessageText,
    notification_type: NotificationType,
    parse_mode: ParseMode = "HTML",
    scheduled_at: ScheduledAt = None,
) -> dict[str, Any]:
    """Queue one message for many chats and start sending it at the rate limit — at once, or from
    ``scheduled_at`` (ISO 8601, UTC unless it names an offset; at most a year ahead): its rows wait in
    ``notification_queue`` until then, and it can be sent now or cancelled meanwhile
    (:mod:`actors.notifications.scheduled`).

    De-duplicates the ids, inserts the rows in batches (once, even if this message is redelivered)
    and tracks progress in the Redis hash ``cybervpn:broadcast:<broadcast_id>``, which holds the
    final ``{sent, failed, total, duration_seconds}`` once every row is settled.
    """
    runtime = get_runtime()
    mode = check_text(message, parse_mode)
    ids = unique_chat_ids(telegram_ids)
    with runtime.database.transaction() as session:
        created = create_broadcast(
            session,
            current_message_id(),
            ids,
            message=message,
            notification_type=check_type(notification_type),
            parse_mode=mode,
            duplicates_removed=len(telegram_ids) - len(ids),
            trace_id=current_trace_id(),
            scheduled_at=start_time(scheduled_at),
        )
    if created.created:
        start_progress(runtime.redis, created, time.time())
    notification_queue.process_notification_queue.send()
    return {
        "broadcast_id": created.broadcast_id,
        "total": created.total,
        "duplicates_removed": created.duplicates_removed,
        "progress_key": progress_key(created.broadcast_id),
    }
