"""The demo's update handler (``BOT_UPDATE_HANDLER=actors.bot_updates.example:handle``): answers
``/start`` with a greeting and echoes any other text message, through the worker's own Telegram
sender (the fleet's rate limits and circuit breaker). A real bot names its own code instead, e.g.
aiogram's ``async def handle(update, trace_id): await dp.feed_update(bot, Update.model_validate(update))``.

A send Telegram refuses for good (blocked, chat not found) is logged and the update counts as
handled; a transient failure raises, so the update is retried in place.
"""

from __future__ import annotations

import logging
from typing import Any

from worker_app.errors import TransientError
from worker_app.runtime import get_runtime
from worker_app.telegram.sender import DEFERRED, RETRY, SENT

log = logging.getLogger("actors.bot_updates.example")
#: How long a reply may wait for a free Telegram slot before the attempt counts as failed.
MAX_WAIT_S = 5.0


def reply_to(update: dict[str, Any]) -> tuple[int, str] | None:
    """(chat id, reply text) for a text message, ``None`` for anything else."""
    message = update.get("message")
    if not isinstance(message, dict) or not isinstance(message.get("text"), str):
        return None
    chat = message.get("chat")
    chat_id = chat.get("id") if isinstance(chat, dict) else None
    if not isinstance(chat_id, int) or isinstance(chat_id, bool):
        return None
    text = message["text"].strip()
    if text.split("@")[0] == "/start":
        return chat_id, "Hello! This is the CyberVPN demo bot: send me any text and I will echo it."
    return chat_id, text[:4096]


def handle(update: dict[str, Any], trace_id: str) -> None:
    """Reply to a text message; ignore every other update."""
    reply = reply_to(update)
    if reply is None:
        return
    chat_id, text = reply
    delivery = get_runtime().telegram_sender.send(chat_id, text, None, max_wait_s=MAX_WAIT_S)
    if delivery.status == SENT:
        return
    if delivery.status in (RETRY, DEFERRED):
        raise TransientError(f"reply to chat {chat_id} not sent: {delivery.error}")
    log.warning("reply to chat %s refused: %s", chat_id, delivery.error)
