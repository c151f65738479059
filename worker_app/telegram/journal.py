"""The sent journal: every message Telegram accepted, recorded the moment it answers (Redis).

Telegram has no idempotency key: a message it accepted cannot be taken back, and sending it again
reaches the user twice. PostgreSQL learns of a drain's sends only when their batch commits, and
RabbitMQ of an on-demand send only when its message is acked; a worker killed, or PostgreSQL or
RabbitMQ restarting, in between would have the whole batch (or the message) sent again. The journal
closes that window to the sends literally in flight: each accepted send is recorded at once (one
``SET`` per send), a drain settles claimed rows found in the journal as sent without sending them,
and a redelivered ``send_notification`` returns the recorded result instead of sending.

What stays possible: a send whose HTTP request was in flight at the crash (Telegram may or may not
have accepted it) is sent again — unknowable without an idempotency key, and at-least-once beats
losing it. With Redis down the journal is skipped (one warning) and delivery is at-least-once per
batch, as without it.

Keys: ``cybervpn:notifications:sent:row:<notification id>`` (deleted once the row's batch commits)
and ``cybervpn:notifications:sent:msg:<message id>`` (on-demand sends), JSON
``{message_id, chat_id, sent_at}``, TTL 1 day.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import redis

from worker_app.redis_client import key
from worker_app.redis_fallback import RedisFallback
from worker_app.telegram.sender import SENT, Delivery

TTL_S = 24 * 3600


def row_key(notification_id: object) -> str:
    return key("notifications", "sent", "row", str(notification_id))


def message_key(message_id: str) -> str:
    return key("notifications", "sent", "msg", message_id)


class SendJournal:
    """Records accepted sends and finds them again; thread-safe; never raises on Redis errors."""

    def __init__(self, client: redis.Redis, *, ttl_s: int = TTL_S) -> None:
        self._redis = client
        self.ttl_s = ttl_s
        self._use = RedisFallback("sent journal", "a crash may send the messages of a batch in flight twice")

    def record(self, journal_key: str, delivery: Delivery) -> None:
        """Remember that ``delivery`` (a sent one) was accepted by Telegram."""
        value = json.dumps(
            {"message_id": delivery.message_id, "chat_id": delivery.chat_id, "sent_at": delivery.sent_at}
        )
        self._use.run(lambda: self._redis.set(journal_key, value, ex=self.ttl_s), lambda: None)

    def lookup(self, journal_keys: Sequence[str]) -> dict[str, Delivery]:
        """The recorded sends among ``journal_keys`` (one round trip), as sent deliveries."""
        if not journal_keys:
            return {}
        nothing: list[Any] = [None] * len(journal_keys)
        found: list[Any] = self._use.run(lambda: list(self._redis.mget(journal_keys)), lambda: nothing)
        deliveries: dict[str, Delivery] = {}
        for journal_key, raw in zip(journal_keys, found, strict=True):
            if raw:
                sent = json.loads(raw)
                deliveries[journal_key] = Delivery(
                    SENT, message_id=sent["message_id"], chat_id=sent["chat_id"], sent_at=sent["sent_at"]
                )
        return deliveries

    def forget(self, journal_keys: Sequence[str]) -> None:
        """Drop entries whose outcome PostgreSQL now holds (best effort: they expire anyway)."""
        if journal_keys:
            self._use.run(lambda: self._redis.delete(*journal_keys), lambda: 0)
