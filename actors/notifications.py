"""Telegram notifications: the notification_queue consumer, on-demand sends and broadcasts.

Module = domain = queue ``notifications``; retry policy: ``worker_app.policies.POLICIES['notifications']``
(on-demand sends). The logic lives in :mod:`worker_app.notifications`; these actors decode their
arguments, pick the process's services and call it.
"""

from __future__ import annotations

import inspect
import logging
import time
from typing import Annotated, Any

import dramatiq
from dramatiq import get_broker
from dramatiq.middleware import CurrentMessage
from pydantic import Field
from sqlalchemy.exc import OperationalError

from worker_app.arguments import checked_by
from worker_app.context import current_trace_id
from worker_app.errors import ConfigurationError
from worker_app.heartbeat import declare_heartbeat
from worker_app.jobs import register_canceller
from worker_app.notifications import broadcast
from worker_app.notifications.cancel import cancel_notification_job
from worker_app.notifications.on_demand import SEND_PARAMETERS, defer_dead_send, send_on_demand
from worker_app.notifications.text import (
    ChatId,
    MessageText,
    NotificationRejected,
    NotificationType,
    ParseMode,
    check_chat_id,
    check_text,
    check_type,
)
from worker_app.policies import MAX_RATE_LIMITED_RETRIES, Alert, RetryPolicy, Skip, policy_for
from worker_app.runtime import get_runtime

QUEUE = "notifications"
log = logging.getLogger(__name__)

heartbeat = declare_heartbeat(QUEUE)
register_canceller(cancel_notification_job)  # broadcasts and deferred sends: worker-app jobs cancel


@dramatiq.actor(
    queue_name=QUEUE,
    retry_policy=RetryPolicy(0, when_exhausted=Skip()),  # recorded dead; the next tick drains again
)
def process_notification_queue() -> None:
    """Send every due ``notification_queue`` row (scheduled every 30 s; broadcasts also kick it).

    Runs only when one of NOTIFICATION_DRAINERS fleet-wide slots is free; drains (polling every
    NOTIFICATION_POLL_INTERVAL_S for new rows) until NOTIFICATION_DRAIN_BUDGET_S ends or the worker
    stops, then re-enqueues itself if it sent anything, so a busy queue is drained continuously.
    Rows that used up their attempts raise one (de-duplicated) admin alert per drain.
    """
    runtime = get_runtime()
    holder = _current_message_id()
    if not runtime.drainer_slots.acquire(holder):
        log.info("notification drain skipped: %d drains already running", runtime.drainer_slots.max_holders)
        return
    try:
        report = runtime.notification_drainer.drain()
        broadcast.refresh_progress(runtime.database, runtime.redis, broadcast.unsettled(runtime.database))
    except OperationalError as e:
        # PostgreSQL unreachable: nothing was claimed, so nothing is lost; the next tick drains again.
        # Not an error to retry or record dead, or every outage would leave a dead letter per tick.
        log.warning("notification drain skipped: database unavailable (%s); the next tick retries", e.orig)
        return
    finally:
        runtime.drainer_slots.release(holder)
    if report.exhausted:
        row, error = report.exhausted[-1]
        runtime.alerts.alert(
            "notifications.retries_exhausted",
            f"{len(report.exhausted)} notification(s) failed after "
            f"{runtime.settings.notification_max_retries} attempts; "
            f"last: {row.notification_type} to {row.telegram_id}: {error}",
        )
    if report.stopped == "halt":
        runtime.alerts.alert(
            "notifications.telegram_config",
            f"Telegram rejects the bot: {report.halt_error}",
            severity="critical",
        )
        raise ConfigurationError(f"notification drain stopped: {report.halt_error}")
    if report.stopped in ("budget", "paused", "breaker", "shutdown") and report.batches:
        process_notification_queue.send()  # rows may still be due: carry on in a fresh message
    log.info("notification drain: %s", report.summary())  # returns nothing: no result is stored


def _sendable(arguments: dict[str, Any]) -> None:
    """The text fits Telegram under its parse mode (its length is counted after the markup)."""
    check_text(arguments["message"], arguments["parse_mode"])


def _broadcastable(arguments: dict[str, Any]) -> None:
    """The text is sendable and the distinct chat ids fit BROADCAST_MAX_RECIPIENTS."""
    _sendable(arguments)
    cap = get_runtime().settings.broadcast_max_recipients
    ids = arguments["telegram_ids"]
    if len(ids) > cap and len(set(ids)) > cap:
        raise NotificationRejected(
            f"telegram_ids: {len(set(ids))} distinct chat ids, more than BROADCAST_MAX_RECIPIENTS ({cap}); "
            "split the audience, or use a bulk operation"
        )


@dramatiq.actor(queue_name=QUEUE, store_results=True)
@checked_by(_sendable)
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


@dramatiq.actor(queue_name=QUEUE, store_results=True, when_exhausted=Alert("warning"))
@checked_by(_broadcastable)
def broadcast_message(
    telegram_ids: Annotated[list[ChatId], Field(min_length=1)],
    message: MessageText,
    notification_type: NotificationType,
    parse_mode: ParseMode = "HTML",
) -> dict[str, Any]:
    """Queue one message for many chats and start sending it at the rate limit.

    De-duplicates the ids, inserts the rows in batches (once, even if this message is redelivered)
    and tracks progress in the Redis hash ``cybervpn:broadcast:<broadcast_id>``, which holds the
    final ``{sent, failed, total, duration_seconds}`` once every row is settled.
    """
    runtime = get_runtime()
    mode = check_text(message, parse_mode)
    ids = broadcast.unique_chat_ids(telegram_ids)
    with runtime.database.transaction() as session:
        created = broadcast.create_broadcast(
            session,
            _current_message_id(),
            ids,
            message=message,
            notification_type=check_type(notification_type),
            parse_mode=mode,
            duplicates_removed=len(telegram_ids) - len(ids),
            trace_id=current_trace_id(),
        )
    if created.created:
        broadcast.start_progress(runtime.redis, created, time.time())
    process_notification_queue.send()
    return {
        "broadcast_id": created.broadcast_id,
        "total": created.total,
        "duplicates_removed": created.duplicates_removed,
        "progress_key": broadcast.progress_key(created.broadcast_id),
    }


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


def _current_message_id() -> str:
    message = CurrentMessage.get_current_message()
    if message is None:
        raise RuntimeError("called outside a Dramatiq worker")
    return str(message.message_id)
