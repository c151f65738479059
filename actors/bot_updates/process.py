"""``handle_bot_update``: one Telegram update through the user's handler, retried in place.

The update's shard (its chat's, :mod:`actors.bot_updates.routing`) delivers it to one worker at a
time, after the chat's previous update is settled (:mod:`worker_app.ordered`). Here:

1. an update whose ``update_id`` was handled already (``cybervpn:bot_updates:done:<update_id>``,
   kept ``BOT_UPDATE_DEDUP_TTL_S``) is skipped: a copy redelivered after a worker died past its
   handler, or delivered twice by Telegram;
2. the handler runs; a failure is retried **in place** up to ``BOT_UPDATE_RETRIES`` times after
   ``BOT_UPDATE_BACKOFF_MS``, twice that, … (a ``RateLimited`` waits its own ``retry_after``), the chat's
   later updates waiting behind it;
3. the last failure propagates: the update is recorded dead with its traceback (``worker-app dlq``),
   and the shard moves on to the chat's next update. A :class:`~worker_app.errors.PermanentError` is
   not retried.

Redis down: the update is handled without the de-duplication (at least once).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dramatiq
import redis

from actors.bot_updates import QUEUE
from actors.bot_updates.handler import Handler, call_handler, load_handler
from actors.bot_updates.metrics import updates_total
from actors.bot_updates.routing import chat_key
from worker_app import context
from worker_app.errors import BadMessage, PermanentError, RateLimited
from worker_app.redis_client import key
from worker_app.runtime import get_runtime

log = logging.getLogger("actors.bot_updates")


@dataclass(frozen=True)
class Handled:
    """How one update went: ``attempts`` its handler ran (0: skipped as a duplicate)."""

    update_id: int
    chat: str
    attempts: int
    duplicate: bool = False


class Seen:
    """Update ids handled already, in Redis for ``ttl_s``; every Redis error is a miss."""

    def __init__(self, client: redis.Redis, ttl_s: int) -> None:
        self.client = client
        self.ttl_s = ttl_s

    @staticmethod
    def _key(update_id: int) -> str:
        return key("bot_updates", "done", update_id)

    def handled(self, update_id: int) -> bool:
        try:
            return bool(self.client.exists(self._key(update_id)))
        except redis.RedisError as e:
            log.warning("bot update %s: de-duplication unavailable (%s); handling it", update_id, e)
            return False

    def mark(self, update_id: int) -> None:
        try:
            self.client.set(self._key(update_id), "1", ex=self.ttl_s)
        except redis.RedisError as e:
            log.warning("bot update %s handled, not remembered (%s): a copy would run again", update_id, e)


def update_id_of(update: Any) -> int:
    """The update's ``update_id``; anything but a Telegram update is a :class:`BadMessage`."""
    if not isinstance(update, dict):
        raise BadMessage(f"a Telegram update is a JSON object, not {type(update).__name__}")
    update_id = update.get("update_id")
    if not isinstance(update_id, int) or isinstance(update_id, bool):
        raise BadMessage(f"update_id must be an integer, not {update_id!r}")
    return update_id


def handle_update(
    update: dict[str, Any],
    trace_id: str,
    *,
    handler: Handler,
    retries: int,
    backoff_ms: int,
    seen: Seen | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Handled:
    """Run ``handler`` on ``update``, retrying in place; raises the last failure."""
    update_id = update_id_of(update)
    chat = chat_key(update)
    if seen is not None and seen.handled(update_id):
        updates_total().labels("duplicate").inc()
        log.info("bot update %s (%s) handled already: skipped", update_id, chat,
                 extra={"update_id": update_id, "chat": chat})  # fmt: skip
        return Handled(update_id, chat, 0, duplicate=True)
    attempt = 0
    while True:
        attempt += 1
        try:
            call_handler(handler, update, trace_id)
            break
        except PermanentError:
            updates_total().labels("dead").inc()
            raise
        except Exception as e:
            if attempt > retries:
                updates_total().labels("dead").inc()
                log.error("bot update %s (%s) failed %d time(s); dead-lettered, the chat goes on",
                          update_id, chat, attempt, extra={"update_id": update_id, "chat": chat})  # fmt: skip
                raise
            delay_s = backoff_ms * 2 ** (attempt - 1) / 1000
            if isinstance(e, RateLimited):
                delay_s = max(delay_s, e.retry_after_s)
            updates_total().labels("retried").inc()
            log.warning("bot update %s (%s) attempt %d failed (%s: %s); retrying in place in %.2f s",
                        update_id, chat, attempt, type(e).__name__, e, delay_s,
                        extra={"update_id": update_id, "chat": chat})  # fmt: skip
            sleep(delay_s)
    if seen is not None:
        seen.mark(update_id)
    updates_total().labels("handled").inc()
    return Handled(update_id, chat, attempt)


_handler: tuple[str | None, Handler] | None = None


def configured_handler(path: str | None) -> Handler:
    """The handler named by ``path``, imported once per process."""
    global _handler
    if _handler is None or _handler[0] != path:
        _handler = (path, load_handler(path))
    return _handler[1]


@dramatiq.actor(queue_name=QUEUE, time_limit=get_runtime().settings.bot_update_time_limit_ms)
def handle_bot_update(update: dict[str, Any]) -> None:
    """Handle one Telegram update with ``BOT_UPDATE_HANDLER``, in its chat's order."""
    runtime = get_runtime()
    settings = runtime.settings
    trace_id = context.current_trace_id() or f"tg-{update_id_of(update)}"
    ttl_s = settings.bot_update_dedup_ttl_s
    handle_update(
        update,
        trace_id,
        handler=configured_handler(settings.bot_update_handler),
        retries=settings.bot_update_retries,
        backoff_ms=settings.bot_update_backoff_ms,
        seen=Seen(runtime.redis, ttl_s) if ttl_s else None,
    )
