"""One Telegram send inside the shared limits, with its outcome sorted for the caller.

:class:`TelegramSender` is what every notification path uses (queue consumer, on-demand send,
admin alerts): reserve a slot (:mod:`worker_app.telegram.ratelimit`), sleep until it, send,
and turn the reply into a :class:`Delivery` instead of an exception, because each caller acts on
the kinds differently (a row gets ``attempts + 1``, an on-demand message a Dramatiq retry).
A 429 pauses every sender in the fleet for Telegram's ``retry_after`` before it is reported.
While the circuit breaker (:mod:`worker_app.clients.breaker`) is open nothing is sent:
every send is :data:`DEFERRED` until the breaker's next probe.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from worker_app.clients.breaker import PROBE_WAIT_S, BreakerConfig, CircuitBreaker
from worker_app.clients.telegram import (
    TelegramAuthError,
    TelegramClient,
    TelegramRateLimited,
    TelegramUnavailable,
)
from worker_app.errors import PermanentError
from worker_app.telegram import metrics
from worker_app.telegram.ratelimit import TelegramRateLimiter

if TYPE_CHECKING:
    import redis

    from worker_app.config import Settings

SENT = "sent"
RETRY = "retry"
"""Transient failure (5xx, timeout, connection refused): counts as an attempt."""
FAILED = "failed"
"""Permanent for this message or chat (403 blocked, 400 chat not found / too long): never retried."""
DEFERRED = "deferred"
"""Not sent because of rate limits (ours or a 429) or the open circuit breaker: not an attempt; try
again after ``wait_s``."""
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
    """Sends within the fleet-wide limits; thread-safe (the client pools, the limiter is Redis, the
    breaker locks). ``breaker`` defaults to one with the TELEGRAM_BREAKER_* defaults."""

    def __init__(
        self,
        client: TelegramClient,
        limiter: TelegramRateLimiter,
        *,
        breaker: CircuitBreaker | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.limiter = limiter
        self.breaker = breaker if breaker is not None else telegram_breaker()
        self._sleep = sleep
        self._clock = clock

    def send(
        self, chat_id: int, text: str, parse_mode: str | None, *, max_wait_s: float, silent: bool = False
    ) -> Delivery:
        """Send once a slot is free, waiting at most ``max_wait_s`` for it (else :data:`DEFERRED`);
        ``silent``: delivered without a notification sound."""
        held_s = self.breaker.blocked_for()
        if held_s:
            return _held_back(held_s)  # no slot booked: an outage must not eat the bot's rate
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
            return self._attempt(chat_id, text, parse_mode, silent)

    def _attempt(self, chat_id: int, text: str, parse_mode: str | None, silent: bool = False) -> Delivery:
        """One call, unless the breaker holds it back; tells the breaker what Telegram did."""
        if not self.breaker.allow():
            return _held_back(self.breaker.blocked_for())
        try:
            delivery = self._call(chat_id, text, parse_mode, silent)
        except BaseException:
            self.breaker.release_probe()
            raise
        if delivery.status != RETRY:
            self.breaker.record_success()  # an answer, even a 4xx or a 429, proves Telegram is up
            return delivery
        if self.breaker.record_failure(delivery.error or "?"):
            return _held_back(self.breaker.blocked_for(), delivery.error)
        return delivery

    def _call(self, chat_id: int, text: str, parse_mode: str | None, silent: bool = False) -> Delivery:
        try:
            sent = self.client.send_message(chat_id, text, parse_mode=parse_mode, disable_notification=silent)
        except TelegramRateLimited as e:
            self.limiter.pause(e.retry_after_s)
            metrics.count_rate_limited()
            return Delivery(DEFERRED, wait_s=e.retry_after_s, error=str(e), rate_limited=True)
        except TelegramAuthError as e:
            return Delivery(HALT, error=str(e))
        except PermanentError as e:
            return Delivery(FAILED, error=str(e))
        except TelegramUnavailable as e:
            return Delivery(RETRY, error=str(e))
        return Delivery(SENT, message_id=sent.message_id, chat_id=sent.chat_id, sent_at=time.time())


def _held_back(wait_s: float, failure: str | None = None) -> Delivery:
    wait_s = max(wait_s, PROBE_WAIT_S)
    error = f"telegram circuit breaker open: not sent, retry in {wait_s:.1f}s"
    return Delivery(DEFERRED, wait_s=wait_s, error=f"{error} (last failure: {failure})" if failure else error)


def build_sender(settings: Settings, redis_client: redis.Redis, client: TelegramClient) -> TelegramSender:
    """The process's sender from settings: Redis-shared limits with their local fallback
    (TELEGRAM_*_RATE_PER_S, TELEGRAM_FALLBACK_RATE_PER_S) and the breaker (TELEGRAM_BREAKER_*)."""
    limiter = TelegramRateLimiter(
        redis_client,
        global_per_s=settings.telegram_global_rate_per_s,
        per_chat_per_s=settings.telegram_per_chat_rate_per_s,
        fallback_per_s=settings.telegram_fallback_rate_per_s,
    )
    breaker = telegram_breaker(
        BreakerConfig(
            failures=settings.telegram_breaker_failures,
            window_s=settings.telegram_breaker_window_s,
            cooldown_s=settings.telegram_breaker_cooldown_s,
            max_cooldown_s=settings.telegram_breaker_max_cooldown_s,
        )
    )
    return TelegramSender(client, limiter, breaker=breaker)


def telegram_breaker(config: BreakerConfig | None = None, **options: Any) -> CircuitBreaker:
    """A breaker for Telegram sends, reporting to ``cybervpn_telegram_breaker_*``."""
    return CircuitBreaker(config, service="telegram", on_state=metrics.set_breaker_state, **options)
