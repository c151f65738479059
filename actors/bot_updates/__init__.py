"""Telegram bot updates, handled per chat in arrival order (seed 004: the bot's update handling moved
out of the web process into queue-fed workers).

Package = domain ``bot_updates``, an **ordered domain** (:mod:`worker_app.ordered`): its messages are
spread over ``BOT_UPDATE_SHARDS`` queues ``bot_updates.00`` … by chat, each consumed by one worker at
a time with prefetch 1, so one chat's updates run one at a time in order while chats run in parallel.
Retry policy: ``worker_app.policies.POLICIES['bot_updates']`` (no retry through a delay queue: the
actor retries in place, ``BOT_UPDATE_RETRIES``, then the update is dead-lettered). One module per
feature:

* :mod:`.routing` — the chat an update belongs to (its ordering key);
* :mod:`.handler` — ``BOT_UPDATE_HANDLER``, the user's code, sync or ``async``;
* :mod:`.process` — ``handle_bot_update``: de-duplication, in-place retries, the dead letter;
* :mod:`.example` — the demo's handler (``/start`` and echo);
* :mod:`.metrics` — ``cybervpn_bot_updates_total{outcome}``.

Updates arrive through ``POST /webhooks/telegram`` on ``worker-app serve``
(:mod:`worker_app.web.telegram_webhook`) or ``handle_bot_update.send(update)`` from any producer.
"""

from __future__ import annotations

from typing import Any

from actors.bot_updates.routing import chat_key
from worker_app import ordered
from worker_app.heartbeat import declare_heartbeat
from worker_app.runtime import get_runtime

QUEUE = "bot_updates"


def _key_of(message: Any) -> str:
    """An update's chat; any other message of the domain (its heartbeat, a malformed update, which
    its worker dead-letters) goes to one fixed shard."""
    update = message.args[0] if message.args else message.kwargs.get("update")
    return chat_key(update) if isinstance(update, dict) else "other"


DOMAIN = ordered.OrderedDomain(QUEUE, get_runtime().settings.bot_update_shards, _key_of)
ordered.register(DOMAIN)
heartbeat = declare_heartbeat(QUEUE)

from actors.bot_updates.process import handle_bot_update  # noqa: E402  (needs QUEUE)

for _shard in DOMAIN.queues():
    handle_bot_update.broker.declare_queue(_shard)

__all__ = ["DOMAIN", "QUEUE", "handle_bot_update", "heartbeat"]
