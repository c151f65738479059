"""At most N drains of ``notification_queue`` at once, fleet-wide (Redis).

A drain that runs out of its time budget with rows still due re-enqueues itself, so a 10,000-row
broadcast drains continuously at the rate limit instead of 25 s out of every 30. The slots bound
how many drains run side by side (NOTIFICATION_DRAINERS): a scheduler tick that finds every slot
taken is a no-op. A slot expires on its own when its holder dies (budget + a minute).

Key: ``cybervpn:notifications:drainers`` (sorted set: holder → expiry, unix ms).
"""

from __future__ import annotations

import redis

from worker_app.redis_client import key

SLOTS_KEY = key("notifications", "drainers")

# KEYS: the set. ARGV: holder, max holders, ttl ms. Returns 1 when the slot is taken.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) or redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
  return 1
end
return 0
"""


class DrainerSlots:
    """Fleet-wide slots for concurrent drains."""

    def __init__(self, client: redis.Redis, *, max_holders: int, ttl_s: float) -> None:
        self._redis = client
        self.max_holders = max_holders
        self.ttl_ms = int(ttl_s * 1000)
        self._acquire = client.register_script(_ACQUIRE)

    def acquire(self, holder: str) -> bool:
        """Take a slot for ``holder`` (idempotent for the same holder); False when all are taken."""
        return bool(self._acquire(keys=[SLOTS_KEY], args=[holder, self.max_holders, self.ttl_ms]))

    def release(self, holder: str) -> None:
        """Give the slot back."""
        self._redis.zrem(SLOTS_KEY, holder)

    def holders(self) -> int:
        """How many slots are held right now (expired ones, of drains that died, not counted)."""
        seconds, micros = self._redis.time()
        now_ms = int(seconds) * 1000 + int(micros) // 1000
        return int(self._redis.zcount(SLOTS_KEY, f"({now_ms}", "+inf"))
