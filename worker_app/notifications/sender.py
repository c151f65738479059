"""One Telegram send inside the shared limits, with its outcome sorted for the caller.

:class:`TelegramSender` is what every notification path uses (queue consumer, on-demand send,
admin alerts): reserve a slot (:mod:`worker_app.notifications.ratelimit`), sleep until it, send,
and turn the reply into a :class:`Delivery` instead of an exception, because each caller acts on
the kinds differently (a row gets ``attempts + 1``, an on-demand message a Dramatiq retry).
A 429 pauses every sender in the fleet for Telegram's ``retry_after`` before it is reported.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from worker_app.clients.telegram import (
    TelegramAuthError,
    TelegramClient,
    TelegramRateLimited,
    TelegramUnavailable,
)
from worker_app.errors import PermanentError
from worker_app.notifications.ratelimit import TelegramRateLimiter

SENT = "sent"
RETRY = "retry"
"""Transient failure (5xx, timeout, connection refused): counts as an attempt."""
FAILED = "failed"
"""Permanent for this message or chat (403 blocked, 400 chat not found / too long): never retried."""
DEFERRED = "deferred"
"""Not sent because of rate limits (ours or a 429): not an attempt; try again after ``wait_s``."""
HALT = "halt"
"""401/404: the bot token or API URL is wrong; every send would fail the same way."""


@dataclass(frozen=True)
class Delivery:
    """What happened to one send. ``chat_id`` is where it landed (a migrated group's new id)."""

    status: str
    message_id: int | None = None
    chat_id: int | None = None
    sent_at: float | None = None
    error: str | None = None
    wait_s: float = 0.0
    rate_limited: bool = False


class TelegramSender:
    """Sends within the fleet-wide limits; thread-safe (the client pools, the limiter is Redis)."""

    def __init__(
        self,
        client: TelegramClient,
        limiter: TelegramRateLimiter,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.limiter = limiter
        self._sleep = sleep
        self._clock = clock

    def send(self, chat_id: int, text: str, parse_mode: str | None, *, max_wait_s: float) -> Delivery:
        """Send once a slot is free, waiting at most ``max_wait_s`` for it (else :data:`DEFERRED`)."""
        deadline = self._clock() + max_wait_s
        while True:
            patience = max(0.0, deadline - self._clock())
            slot = self.limiter.reserve(chat_id, max_wait_s=patience)
            if not slot.booked and slot.wait_s > patience:
                return Delivery(DEFERRED, wait_s=slot.wait_s, error=f"rate limited for {slot.wait_s:.1f}s")
            if not slot.booked:
                self._sleep(slot.wait_s)  # the chat is busy for a moment: wait, then book afresh
                continue
            if slot.wait_s > 0:
                self._sleep(slot.wait_s)
                if self.limiter.paused_for() > 0:
                    continue  # a 429 arrived while this sender slept: its slot is void
            return self._attempt(chat_id, text, parse_mode)

    def _attempt(self, chat_id: int, text: str, parse_mode: str | None) -> Delivery:
        try:
            sent = self.client.send_message(chat_id, text, parse_mode=parse_mode)
        except TelegramRateLimited as e:
            self.limiter.pause(e.retry_after_s)
            return Delivery(DEFERRED, wait_s=e.retry_after_s, error=str(e), rate_limited=True)
        except TelegramAuthError as e:
            return Delivery(HALT, error=str(e))
        except PermanentError as e:
            return Delivery(FAILED, error=str(e))
        except TelegramUnavailable as e:
            return Delivery(RETRY, error=str(e))
        return Delivery(SENT, message_id=sent.message_id, chat_id=sent.chat_id, sent_at=time.time())
