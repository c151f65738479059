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
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import redis

from worker_app.redis_client import key

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


class TelegramRateLimiter:
    """Bot-wide and per-chat send slots plus the fleet-wide 429 pause, all in Redis."""

    def __init__(self, client: redis.Redis, *, global_per_s: float, per_chat_per_s: float) -> None:
        self._redis = client
        self.global_per_s = global_per_s
        self.per_chat_per_s = per_chat_per_s
        self._global_ms = 1000.0 / global_per_s if global_per_s > 0 else 0.0
        self._chat_ms = 1000.0 / per_chat_per_s if per_chat_per_s > 0 else 0.0
        self._reserve = client.register_script(_RESERVE)
        self._pause = client.register_script(_PAUSE)

    def reserve(self, chat_id: int | str, *, max_wait_s: float) -> Reservation:
        """Book the next slot for ``chat_id`` if it starts within ``max_wait_s``."""
        if not (self._global_ms or self._chat_ms):  # limits off: only a 429 pause can hold us
            paused_s = self.paused_for()
            return Reservation(paused_s <= max_wait_s, paused_s)
        booked, wait_ms = self._reserve(
            keys=[GLOBAL_KEY, chat_key(chat_id), PAUSE_KEY],
            args=[self._global_ms, self._chat_ms, max_wait_s * 1000],
        )
        return Reservation(bool(booked), max(int(wait_ms), 0) / 1000)

    def pause(self, seconds: float) -> None:
        """Stop every sender for ``seconds`` (Telegram's ``retry_after``); never shortens a pause."""
        self._pause(keys=[PAUSE_KEY], args=[max(1, math.ceil(seconds * 1000))])

    def paused_for(self) -> float:
        """Seconds left of the current fleet-wide pause (0 when none)."""
        remaining_ms = int(self._redis.pttl(PAUSE_KEY))
        return remaining_ms / 1000 if remaining_ms > 0 else 0.0
