"""Telegram send limits shared by every worker process and host, kept in Redis.

Two schedules, both strict (no bursts): ~30 sends/s for the whole bot and ~1/s per chat
(``TELEGRAM_GLOBAL_RATE_PER_S``, ``TELEGRAM_PER_CHAT_RATE_PER_S``; 0 turns one off). A sender
*reserves* the next free slot atomically (one Lua script, Redis' own clock) and sleeps until it:
no polling, no thundering herd, and the bot's rate is spread over every process that sends.

A slot is only booked when the chat is free at that moment; a chat that is still busy gets its
wait back unbooked, so one chatty user never leaves holes in the bot-wide schedule. A 429 from
Telegram sets ``cybervpn:telegram:paused`` for its ``retry_after``: every reservation made while
it exists starts after it, and a sender that slept re-checks it before sending.

Keys: ``cybervpn:telegram:rate:global`` and ``cybervpn:telegram:rate:chat:<id>`` (the next free
slot, unix ms; they expire once in the past) and ``cybervpn:telegram:paused`` (TTL = the pause).

**Redis down.** The limits cannot be shared without Redis, and sending nothing would stall every
notification, so each process falls back to :class:`LocalRateLimiter`: the same strict schedules
kept in memory, at TELEGRAM_FALLBACK_RATE_PER_S (default 5/s, never above the global rate) per
process and the configured per-chat interval, plus a local 429 pause. N processes then send at most
N x that rate in total — pick it so that this stays under Telegram's ~30/s. A 429 is always recorded
locally as well, so a pause survives Redis failing mid-pause. Redis is tried again every few
seconds (:mod:`worker_app.redis_fallback`: one warning when falling back, one info
when back).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis

from worker_app.redis_client import key
from worker_app.redis_fallback import RedisFallback

# KEYS: global slot, chat slot, pause flag. ARGV: global interval ms, chat interval ms (0 = none),
# the longest acceptable wait ms. Returns {booked 0|1, wait ms}.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local global_ms, chat_ms, max_wait = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local start = now
local paused = redis.call('PTTL', KEYS[3])
if paused > 0 then start = now + paused end
if global_ms > 0 then
  local free = tonumber(redis.call('GET', KEYS[1]) or '0')
  if free > start then start = free end
end
if chat_ms > 0 then
  local free = tonumber(redis.call('GET', KEYS[2]) or '0')
  if free > start then return {0, math.ceil(free - now)} end
end
local wait = start - now
if wait > max_wait then return {0, math.ceil(wait)} end
local function book(slot, interval)
  local ttl = math.ceil(wait + interval) + 1000
  redis.call('SET', slot, string.format('%.3f', start + interval), 'PX', ttl)
end
if global_ms > 0 then book(KEYS[1], global_ms) end
if chat_ms > 0 then book(KEYS[2], chat_ms) end
return {1, math.ceil(wait)}
"""

# KEYS: pause flag. ARGV: pause ms. Lengthens the pause, never shortens it.
_PAUSE = """
local ms = tonumber(ARGV[1])
if redis.call('PTTL', KEYS[1]) < ms then redis.call('SET', KEYS[1], '1', 'PX', ms) end
return redis.call('PTTL', KEYS[1])
"""

GLOBAL_KEY = key("telegram", "rate", "global")
PAUSE_KEY = key("telegram", "paused")
DEFAULT_FALLBACK_RATE_PER_S = 5.0
"""TELEGRAM_FALLBACK_RATE_PER_S's default: the per-process send rate while Redis is unreachable."""
_MAX_LOCAL_CHATS = 10_000


def chat_key(chat_id: int | str) -> str:
    """Redis key of ``chat_id``'s next free send slot."""
    return key("telegram", "rate", "chat", str(chat_id))


@dataclass(frozen=True)
class Reservation:
    """The answer to :meth:`TelegramRateLimiter.reserve`.

    ``booked``: a slot is held; send after sleeping ``wait_s``. Not booked: the bot or the chat is
    not free within the acceptable wait; ``wait_s`` says when to try again.
    """

    booked: bool
    wait_s: float


class LocalRateLimiter:
    """The limits of :class:`TelegramRateLimiter` kept in this process only (no Redis); thread-safe.

    Same rules as the Redis script: strict intervals, a busy chat is answered unbooked, nothing is
    booked beyond the acceptable wait, and a pause delays every reservation. 0 turns a limit off.
    """

    def __init__(
        self, *, global_per_s: float, per_chat_per_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.global_per_s = global_per_s
        self._global_s = 1 / global_per_s if global_per_s > 0 else 0.0
        self._chat_s = 1 / per_chat_per_s if per_chat_per_s > 0 else 0.0
        self._clock = clock
        self._lock = threading.Lock()
        self._next_global = 0.0
        self._next_chat: dict[str, float] = {}
        self._paused_until = 0.0

    def reserve(self, chat_id: int | str, *, max_wait_s: float) -> Reservation:
        """Book the next local slot for ``chat_id`` if it starts within ``max_wait_s``."""
        chat = str(chat_id)
        with self._lock:
            now = self._clock()
            start = max(now, self._paused_until, self._next_global)
            chat_free = self._next_chat.get(chat, 0.0) if self._chat_s else 0.0
            if chat_free > start:
                return Reservation(False, chat_free - now)
            if start - now > max_wait_s:
                return Reservation(False, start - now)
            if self._global_s:
                self._next_global = start + self._global_s
            if self._chat_s:
                self._book_chat(chat, start + self._chat_s, now)
            return Reservation(True, start - now)

    def pause(self, seconds: float) -> None:
        """Stop this process's sends for ``seconds``; never shortens a pause."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)

    def paused_for(self) -> float:
        """Seconds left of this process's pause (0 when none)."""
        return max(0.0, self._paused_until - self._clock())

    def _book_chat(self, chat: str, free_at: float, now: float) -> None:
        if len(self._next_chat) >= _MAX_LOCAL_CHATS:  # forget chats whose slot is in the past
            self._next_chat = {c: t for c, t in self._next_chat.items() if t > now}
        self._next_chat[chat] = free_at


class TelegramRateLimiter:
    """Bot-wide and per-chat send slots plus the fleet-wide 429 pause, all in Redis; while Redis
    is unreachable, the same limits in this process at ``fallback_per_s`` (see the module doc)."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        global_per_s: float,
        per_chat_per_s: float,
        fallback_per_s: float = DEFAULT_FALLBACK_RATE_PER_S,
    ) -> None:
        self._redis = client
        self.global_per_s = global_per_s
        self.per_chat_per_s = per_chat_per_s
        self._global_ms = 1000.0 / global_per_s if global_per_s > 0 else 0.0
        self._chat_ms = 1000.0 / per_chat_per_s if per_chat_per_s > 0 else 0.0
        self._reserve = client.register_script(_RESERVE)
        self._pause = client.register_script(_PAUSE)
        local_per_s = min(fallback_per_s, global_per_s) if global_per_s > 0 else 0.0
        self.local = LocalRateLimiter(global_per_s=local_per_s, per_chat_per_s=per_chat_per_s)
        rate = f"{local_per_s:g}/s" if local_per_s else "no global limit"
        self.redis_state = RedisFallback(
            "telegram rate limits", f"sending at the local rate ({rate} per process)"
        )

    def reserve(self, chat_id: int | str, *, max_wait_s: float) -> Reservation:
        """Book the next slot for ``chat_id`` if it starts within ``max_wait_s``."""
        return self.redis_state.run(
            lambda: self._reserve_shared(chat_id, max_wait_s),
            lambda: self.local.reserve(chat_id, max_wait_s=max_wait_s),
        )

    def pause(self, seconds: float) -> None:
        """Stop every sender for ``seconds`` (Telegram's ``retry_after``); never shortens a pause."""
        self.local.pause(seconds)
        self.redis_state.run(
            lambda: self._pause(keys=[PAUSE_KEY], args=[max(1, math.ceil(seconds * 1000))]), lambda: None
        )

    def paused_for(self) -> float:
        """Seconds left of the current fleet-wide pause, or of this process's own (0 when none)."""
        return max(self.local.paused_for(), self.redis_state.run(self._shared_paused_for, lambda: 0.0))

    def _reserve_shared(self, chat_id: int | str, max_wait_s: float) -> Reservation:
        if not (self._global_ms or self._chat_ms):  # limits off: only a 429 pause can hold us
            paused_s = max(self.local.paused_for(), self._shared_paused_for())
            return Reservation(paused_s <= max_wait_s, paused_s)
        booked, wait_ms = self._reserve(
            keys=[GLOBAL_KEY, chat_key(chat_id), PAUSE_KEY],
            args=[self._global_ms, self._chat_ms, max_wait_s * 1000],
        )
        return Reservation(bool(booked), max(int(wait_ms), 0) / 1000)

    def _shared_paused_for(self) -> float:
        remaining_ms = int(self._redis.pttl(PAUSE_KEY))
        return remaining_ms / 1000 if remaining_ms > 0 else 0.0
