"""``send_notification``'s logic: send now, or retry, or (retries spent) defer to the queue.

Nothing is lost: a transient failure raises so that the retry middleware tries again after 10 s,
30 s and 90 s (the notifications policy); on the last attempt the message is inserted into
``notification_queue`` instead, where the queue consumer keeps trying with its own backoff. Rate
limits, 429s and an open circuit breaker raise :class:`~worker_app.errors.RateLimited`, retried
after the wait without counting as an attempt — so a Telegram outage does not spend the message's
retries; once the retry middleware's cap on such waits is reached (``deferrals_left`` False), the
message goes to ``notification_queue`` too rather than to the dead letters. A chat that cannot
receive messages (blocked, deactivated, not found) is a result, not an error:
``{"status": "failed", "error": ...}``.

A tracked send that went to the queue shows its job as ``deferred`` (the result keeps the
``notification_id``); cancelling that job withdraws the row (:func:`withdraw_deferred`) if no drain
has taken it yet.
"""

from __future__ import annotations

import inspect
import logging
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import dramatiq
from dramatiq import get_broker
from dramatiq.middleware import CurrentMessage
from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from actors.notifications import metrics
from models.notifications import NotificationQueue
from worker_app.arguments import checked_by
from worker_app.db import Database
from worker_app.errors import RateLimited, UpstreamUnavailable
from worker_app.policies import MAX_RATE_LIMITED_RETRIES, Alert, policy_for
from worker_app.runtime import get_runtime
from worker_app.telegram.journal import SendJournal, message_key
from worker_app.telegram.sender import DEFERRED, FAILED, SENT, TelegramSender
from worker_app.telegram.text import (
    ChatId,
    MessageText,
    NotificationType,
    ParseMode,
    check_chat_id,
    check_text,
    check_type,
)

QUEUE = "notifications"
log = logging.getLogger(__name__)


def send_on_demand(
    sender: TelegramSender,
    database: Database,
    *,
    chat_id: int,
    message: str,
    notification_type: str,
    parse_mode: str | None,
    max_wait_s: float,
    last_attempt: bool,
    deferrals_left: bool = True,
    journal: SendJournal | None = None,
    message_id: str | None = None,
    first_delivery: bool = False,
) -> dict[str, Any]:
    """Send one message now; the result is what ``send_notification`` stores for its caller.

    With a ``journal`` and the Dramatiq ``message_id``, a message redelivered after Telegram
    accepted it (its worker died, or RabbitMQ restarted, before the ack) returns the recorded result
    instead of reaching the user twice. A ``first_delivery`` (neither redelivered nor retried) cannot
    have been sent before, so it skips the lookup: the hot path pays one ``SET``, after the send.
    """
    started = time.time()
    key = message_key(message_id) if journal is not None and message_id else None
    recorded = journal.lookup([key]).get(key) if journal is not None and key and not first_delivery else None
    delivery = recorded or sender.send(chat_id, message, parse_mode, max_wait_s=max_wait_s)
    if delivery.status == SENT and delivery.sent_at is not None:
        if recorded is None:
            if journal is not None and key:
                journal.record(key, delivery)
            metrics.count(notification_type, "sent")
            metrics.observe_latency(notification_type, delivery.sent_at - started)
        sent_at = datetime.fromtimestamp(delivery.sent_at, UTC).isoformat()
        return {
            "status": "sent",
            "message_id": delivery.message_id,
            "chat_id": delivery.chat_id,
            "sent_at": sent_at,
        }
    if delivery.status == FAILED:
        metrics.count(notification_type, "failed")
        return {"status": "failed", "message_id": None, "sent_at": None, "error": delivery.error}
    if delivery.status == DEFERRED and deferrals_left:
        metrics.count(notification_type, "deferred")
        raise RateLimited(f"telegram send deferred: {delivery.error}", retry_after_s=delivery.wait_s)
    if delivery.status != DEFERRED and not last_attempt:
        metrics.count(notification_type, "retry")
        raise UpstreamUnavailable(f"telegram send failed: {delivery.error}")
    notification_id = defer_to_queue(
        database,
        chat_id,
        message,
        notification_type=notification_type,
        parse_mode=parse_mode,
        error=delivery.error,
    )
    metrics.count(notification_type, "queued")
    return {"status": "queued", "message_id": None, "sent_at": None, "notification_id": str(notification_id)}


def defer_to_queue(
    database: Database,
    chat_id: int,
    message: str,
    *,
    notification_type: str,
    parse_mode: str | None,
    error: str | None,
) -> object:
    """Insert the message into ``notification_queue`` (due now); returns the row id."""
    with database.transaction() as session:
        row = NotificationQueue(
            telegram_id=chat_id, message=message, notification_type=notification_type,
            parse_mode=parse_mode, error_message=error,
        )  # fmt: skip
        session.add(row)
        session.flush()
        return row.id


SEND_PARAMETERS = ("telegram_id", "message", "notification_type", "parse_mode")


def defer_dead_send(
    database: Database,
    message: dict[str, Any],
    failure: dict[str, Any],
    parameters: Sequence[str] = SEND_PARAMETERS,
) -> str | None:
    """Put a send that died (``send_notification`` whose last attempt could not queue it: PostgreSQL
    down, a bug) into ``notification_queue``, once: the row id is derived from the dead message's id,
    so a redelivered deferral inserts nothing. ``parameters`` are the dead actor's parameter names,
    binding its positional arguments. Returns the row id; ``None`` when the arguments name no chat id
    (``telegram_id``) and text (``message``): nothing to keep."""
    arguments = {
        **dict(zip(parameters, message.get("args") or [], strict=False)),
        **(message.get("kwargs") or {}),
    }
    chat_id, text_ = arguments.get("telegram_id"), arguments.get("message")
    if not isinstance(chat_id, int) or not isinstance(text_, str) or not text_:
        return None
    row_id = uuid.uuid5(uuid.NAMESPACE_URL, f"cybervpn:dead-send:{message.get('message_id')}")
    error = f"{failure.get('exception_type')}: {failure.get('exception_message')}"
    stmt = (
        insert(NotificationQueue)
        .values(
            id=row_id,
            telegram_id=chat_id,
            message=text_,
            notification_type=str(arguments.get("notification_type") or "manual"),
            parse_mode=arguments.get("parse_mode", "HTML"),
            error_message=error[:1000],
        )
        .on_conflict_do_nothing(index_elements=["id"])
    )
    with database.transaction() as session:
        session.execute(stmt)
    metrics.count(str(arguments.get("notification_type") or "manual"), "queued")
    return str(row_id)


_WITHDRAW = text(
    """
    UPDATE notification_queue SET status = 'failed', error_message = :error, updated_at = now()
    WHERE id = (
        SELECT id FROM notification_queue WHERE id = CAST(:id AS uuid) AND status = 'pending'
        FOR UPDATE SKIP LOCKED
    )
    RETURNING id
    """
)


def withdraw_deferred(session: Session, notification_id: str, *, by: str) -> bool:
    """Mark a deferred send's row ``failed`` ("cancelled by <who>"; the backend's table keeps its
    statuses) if it is still pending and no drain is sending it; whether it was."""
    params = {"id": notification_id, "error": f"cancelled by {by}"}
    return session.execute(_WITHDRAW, params).first() is not None


def sendable(arguments: dict[str, Any]) -> None:
    """The text fits Telegram under its parse mode (its length is counted after the markup)."""
    check_text(arguments["message"], arguments["parse_mode"])


@dramatiq.actor(queue_name=QUEUE, store_results=True)
@checked_by(sendable)
def send_notification(
    telegram_id: ChatId,
    message: MessageText,
    notification_type: NotificationType,
    parse_mode: ParseMode = "HTML",
) -> dict[str, Any]:
    """Send one Telegram message now; the stored result is ``{status, message_id, sent_at, ...}``.

    ``status`` is ``sent``, ``failed`` (the chat cannot receive it) or ``queued`` (three retries at
    10 s, 30 s, 90 s failed; the message went to ``notification_queue``). Rate limits and an open
    circuit breaker delay it without spending a retry. Bad text (empty, over 4096 characters,
    unknown parse mode) is rejected and recorded dead.
    """
    runtime = get_runtime()
    mode = check_text(message, parse_mode)
    message_obj = CurrentMessage.get_current_message()
    options = message_obj.options if message_obj is not None else {}
    return send_on_demand(
        runtime.telegram_sender,
        runtime.database,
        chat_id=check_chat_id(telegram_id),
        message=message,
        notification_type=check_type(notification_type),
        parse_mode=mode,
        max_wait_s=runtime.settings.notification_max_wait_s,
        last_attempt=options.get("retries", 0) >= policy_for(QUEUE).max_retries,
        deferrals_left=options.get("rate_limited", 0) < MAX_RATE_LIMITED_RETRIES,
        journal=runtime.send_journal,
        message_id=message_obj.message_id if message_obj is not None else None,
        first_delivery=message_obj is not None
        and not getattr(message_obj, "redelivered", False)
        and not options.get("retries")
        and not options.get("rate_limited"),
    )


@dramatiq.actor(queue_name=QUEUE, when_exhausted=Alert("error"))
def defer_notification(message: dict[str, Any], failure: dict[str, Any]) -> None:
    """The domain's exhaustion action (``Defer("defer_notification")``): a send that died anyway
    (``send_notification``, or any actor here taking ``telegram_id`` and ``message``) goes to
    ``notification_queue`` once per dead message, where the queue consumer keeps trying. Anything
    else that dies on this queue is logged: it has no row to become."""
    dead_actor = get_broker().actors.get(str(message.get("actor_name")))
    parameters = list(inspect.signature(dead_actor.fn).parameters) if dead_actor else SEND_PARAMETERS
    notification_id = defer_dead_send(get_runtime().database, message, failure, parameters)
    if notification_id is None:
        log.warning(
            "dead %s (message %s) not deferred: its arguments name no telegram_id and message",
            message.get("actor_name"), message.get("message_id"),
        )  # fmt: skip
        return
    log.info(
        "dead %s %s deferred to notification_queue row %s",
        message.get("actor_name"), message.get("message_id"), notification_id,
    )  # fmt: skip
