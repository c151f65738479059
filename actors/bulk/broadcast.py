"""Bulk broadcasts: one message to an audience of any size — an explicit list of chat ids, or ``"all"``,
every panel user with a telegram id.

The sending is the notifications domain's broadcast machinery (:mod:`actors.notifications.broadcast`):
:func:`~actors.notifications.broadcast.create_broadcast` inserts the rows in batches, in one
transaction with the broadcast whose id is the Dramatiq message id, and the ``notification_queue``
consumer sends them at the rate limit. So a redelivered message inserts nothing twice, progress is the
Redis hash ``cybervpn:broadcast:<id>``, ``worker-app jobs cancel`` cancels it, and a job enqueued with
:func:`worker_app.jobs.enqueue_job` goes ``sending`` and ends ``succeeded`` with the final report
``{sent, failed, total, duration_seconds}``. Unlike ``broadcast_message`` there is no
BROADCAST_MAX_RECIPIENTS cap: this is the way for larger audiences.

``"all"`` is read from ``/api/users/stream`` a page at a time (only the distinct chat ids are kept:
users without a telegram id are skipped, two users sharing one get one message), and the rows are
inserted only once the whole audience is read: a panel failure part-way queues nothing, and the job
dies at once (the bulk policy retries nothing) with an error saying so. An audience of nobody
creates no broadcast (it would never settle): the run ends with an empty report.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import dramatiq
import redis
from pydantic import Discriminator, Field, Tag
from sqlalchemy.orm import Session

from actors.bulk import QUEUE
from actors.bulk.metrics import recipients_total
from actors.notifications import queue as notification_queue
from actors.notifications.broadcast import (
    BroadcastCreated,
    create_broadcast,
    start_progress,
    unique_chat_ids,
)
from actors.notifications.on_demand import sendable
from models.notifications import NotificationBroadcast
from worker_app.arguments import checked_by
from worker_app.clients.remnawave import RemnawaveClient, RemnawaveError, RemnawaveUnavailable
from worker_app.context import current_message_id, current_trace_id
from worker_app.db import Database
from worker_app.errors import BadMessage
from worker_app.runtime import get_runtime
from worker_app.telegram.text import (
    CHAT_ID_MAX,
    CHAT_ID_MIN,
    ChatId,
    MessageText,
    NotificationType,
    ParseMode,
    check_text,
    check_type,
)

ALL = "all"
log = logging.getLogger("actors.bulk")


def _audience_kind(value: Any) -> str | None:
    """Which form of ``telegram_ids`` ``value`` is (``None``: neither, an error naming both)."""
    if value == ALL:
        return "all"
    return "ids" if isinstance(value, list | tuple) else None


#: The ``telegram_ids`` argument: ``"all"`` or a non-empty list of chat ids.
Recipients = Annotated[
    Annotated[Annotated[list[ChatId], Field(min_length=1)], Tag("ids")]
    | Annotated[Literal["all"], Tag("all")],
    Discriminator(
        _audience_kind,
        custom_error_type="audience",
        custom_error_message='Input should be "all" or a list of chat ids',
    ),
]


@dataclass(frozen=True)
class Audience:
    """Who a bulk broadcast goes to: distinct chat ids (first occurrence kept) and who was left out."""

    source: str
    """``all`` (the panel's users) or ``list`` (the ids given)."""
    chat_ids: list[int]
    duplicates_removed: int
    without_telegram_id: int = 0
    """Panel users skipped for having no (usable) telegram id."""


def listed_audience(telegram_ids: Sequence[Any]) -> Audience:
    """The given ids, checked and de-duplicated as ``broadcast_message`` does (:class:`BadMessage`
    naming ``telegram_ids[i]`` for one that is not a chat id, or when there is none)."""
    ids = unique_chat_ids(telegram_ids)
    return Audience("list", ids, len(telegram_ids) - len(ids))


def panel_audience(panel: RemnawaveClient) -> Audience:
    """Every panel user's telegram id, read a page at a time; only the distinct ids are kept.

    A panel failure is re-raised as the same kind of error (an outage stays transient, a rejected
    token permanent), saying that nothing was queued."""
    try:
        panel.require_3x()
        return _scan(panel)
    except RemnawaveError as e:
        transient = isinstance(e, RemnawaveUnavailable)
        retry = " (send the broadcast again once the panel answers)" if transient else ""
        raise type(e)(
            f'telegram_ids "all": the audience could not be read from the Remnawave panel, so nothing was '
            f"queued{retry}: {e}",
            status=e.status,
            error_code=e.error_code,
        ) from e


def _scan(panel: RemnawaveClient) -> Audience:
    """The distinct usable telegram ids of every panel user, in id order (first occurrence kept)."""
    seen: dict[int, None] = {}
    with_id = without = 0
    for page in panel.user_pages():
        for user in page:
            chat = user.telegram_id
            if chat is None or not CHAT_ID_MIN <= chat <= CHAT_ID_MAX:
                without += 1
                continue
            with_id += 1
            seen.setdefault(chat, None)
    return Audience(ALL, list(seen), with_id - len(seen), without)


def read_audience(panel: RemnawaveClient, telegram_ids: object) -> Audience:
    """``"all"`` from the panel, else the list given; anything else is a :class:`BadMessage`."""
    if telegram_ids == ALL:
        return panel_audience(panel)
    if not isinstance(telegram_ids, list | tuple):
        raise BadMessage(f'telegram_ids must be "all" or a list of chat ids, got {telegram_ids!r:.80}')
    return listed_audience(telegram_ids)


def empty_report() -> dict[str, Any]:
    """The report of a broadcast to nobody: done at once, no broadcast created."""
    return {"broadcast_id": None, "sent": 0, "failed": 0, "cancelled": 0, "total": 0, "duration_seconds": 0}


def queue_bulk_broadcast(
    database: Database,
    redis_client: redis.Redis,
    panel: RemnawaveClient,
    broadcast_id: str,
    telegram_ids: object,
    *,
    message: str,
    notification_type: str,
    parse_mode: str | None = "HTML",
    trace_id: str | None = None,
) -> dict[str, Any]:
    """Queue ``message`` for every recipient of ``telegram_ids`` (``"all"`` or a list) as the
    broadcast ``broadcast_id``; what the actor returns.

    Bad text, type or ids are a :class:`BadMessage` before the panel is asked. A broadcast that
    exists already (a redelivery) is not read again: its rows are in, its job is brought up to date.
    With rows queued, the result is the broadcast's summary (``broadcast_id``, ``total``,
    ``duplicates_removed``, ``progress_key``, ``audience``, ``without_telegram_id``); with none,
    :func:`empty_report`. The caller starts a drain when ``total`` is not 0.
    """
    started = time.monotonic()
    text = _Text(message, check_type(notification_type), check_text(message, parse_mode))
    with database.transaction() as session:
        again = _redelivered(session, broadcast_id, text)
    if again is not None:
        log.info("bulk broadcast %s redelivered: its %d row(s) were queued already", broadcast_id,
                 again.total, extra={"broadcast_id": broadcast_id, "redelivered": True})  # fmt: skip
        return again.summary()
    audience = read_audience(panel, telegram_ids)
    if not audience.chat_ids:
        _done(broadcast_id, audience, started)
        return empty_report()
    with database.transaction() as session:
        created = text.create(session, broadcast_id, audience, trace_id)
    if created.created:
        start_progress(redis_client, created, time.time())
        _done(broadcast_id, audience, started)
    extra = {"audience": audience.source, "without_telegram_id": audience.without_telegram_id}
    return {**created.summary(), **extra}


@dataclass(frozen=True)
class _Text:
    """The checked message, notification type and parse mode of a bulk broadcast."""

    message: str
    notification_type: str
    parse_mode: str | None

    def create(
        self, session: Session, broadcast_id: str, audience: Audience, trace_id: str | None = None
    ) -> BroadcastCreated:
        """:func:`create_broadcast` for ``audience`` (nothing is inserted if it exists already)."""
        return create_broadcast(
            session, broadcast_id, audience.chat_ids, message=self.message,
            notification_type=self.notification_type, parse_mode=self.parse_mode,
            duplicates_removed=audience.duplicates_removed, trace_id=trace_id,
        )  # fmt: skip


def _redelivered(session: Session, broadcast_id: str, text: _Text) -> BroadcastCreated | None:
    """The broadcast as :func:`create_broadcast` finds it again (its job brought up to date), if it
    exists; ``None`` when it does not, and the audience must be read."""
    if session.get(NotificationBroadcast, broadcast_id) is None:
        return None
    # An existing broadcast inserts nothing, so its audience is not needed (broadcasts are never deleted).
    return text.create(session, broadcast_id, Audience("redelivered", [], 0))


def _done(broadcast_id: str, audience: Audience, started: float) -> None:
    """The run's one log line (logger ``actors.bulk``, ``extra`` = its counts) and its metric."""
    counts = {"queued": len(audience.chat_ids), "duplicate": audience.duplicates_removed,
              "without_telegram_id": audience.without_telegram_id}  # fmt: skip
    for outcome, n in counts.items():
        if n:
            recipients_total().labels(audience.source, outcome).inc(n)
    summary = {"broadcast_id": broadcast_id, "audience": audience.source, "counts": counts,
               "redelivered": False, "duration_s": round(time.monotonic() - started, 3)}  # fmt: skip
    log.info("bulk broadcast %s to %s: %s", broadcast_id, audience.source, counts, extra=summary)


@dramatiq.actor(queue_name=QUEUE, store_results=True)
@checked_by(sendable)
def execute_bulk_broadcast(
    telegram_ids: Recipients,
    message: MessageText,
    notification_type: NotificationType,
    parse_mode: ParseMode = "HTML",
) -> dict[str, Any]:
    """Queue one message for a large audience — ``"all"`` panel users with a telegram id, or a list
    of chat ids, without the BROADCAST_MAX_RECIPIENTS cap — and start sending it at the rate limit.

    Rows are inserted once (even if this message is redelivered) after the whole audience was read;
    the result is the broadcast's summary, and its job ends with ``{sent, failed, total,
    duration_seconds}`` once every row is settled (at once for an audience of nobody). The panel
    down: the job dies with that error, nothing queued (the bulk policy does not retry).
    """
    runtime = get_runtime()
    result = queue_bulk_broadcast(
        runtime.database, runtime.redis, runtime.remnawave, current_message_id(), telegram_ids,
        message=message, notification_type=notification_type, parse_mode=parse_mode,
        trace_id=current_trace_id(),
    )  # fmt: skip
    if result["total"]:
        notification_queue.process_notification_queue.send()
    return result
