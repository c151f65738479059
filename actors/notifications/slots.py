"""At most N drains of ``notification_queue`` at once, fleet-wide (Redis).

A drain that runs out of its time budget with rows still due re-enqueues itself, so a 10,000-row
broadcast drains continuously at the rate limit instead of 25 s out of every 30. The slots bound
how many drains run side by side (NOTIFICATION_DRAINERS): a scheduler tick that finds every slot
taken is a no-op. A slot expires on its own when its holder dies (budget + a minute).

**Redis down: fail open, one drain per process.** Failing closed would stop every notification for
the length of the outage; two drains can never send the same row anyway (``FOR UPDATE SKIP
LOCKED``), so the slots only bound the total send rate — and without Redis each process sends at
its local fallback rate (:mod:`worker_app.telegram.ratelimit`). So each process lets one drain
run at a time and N processes drain at N x the fallback rate. Releasing never fails a drain: a slot
Redis could not release expires on its own.

Key: ``cybervpn:notifications:drainers`` (sorted set: holder → expiry, unix ms).
"""

from __future__ import annotations

import threading

import redis

from worker_app.redis_client import key
from worker_app.redis_fallback import RedisFallback

SLOTS_KEY = key("notifications", "drainers")
LOCAL_HOLDERS = 1
"""Drains one process runs at once while Redis is unreachable."""

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
    """Fleet-wide slots for concurrent drains; one per process while Redis is unreachable."""

    def __init__(self, client: redis.Redis, *, max_holders: int, ttl_s: float) -> None:
        self._redis = client
        self.max_holders = max_holders
        self.ttl_ms = int(ttl_s * 1000)
        self._acquire = client.register_script(_ACQUIRE)
        self._lock = threading.Lock()
        self._local: set[str] = set()
        self.redis_state = RedisFallback("drainer slots", f"at most {LOCAL_HOLDERS} drain per process")

    def acquire(self, holder: str) -> bool:
        """Take a slot for ``holder`` (idempotent for the same holder); False when all are taken."""
        return self.redis_state.run(
            lambda: bool(self._acquire(keys=[SLOTS_KEY], args=[holder, self.max_holders, self.ttl_ms])),
            lambda: self._acquire_local(holder),
        )

    def release(self, holder: str) -> None:
        """Give the slot back (never raises: a slot left in Redis expires with its TTL)."""
        with self._lock:
            self._local.discard(holder)
        self.redis_state.run(lambda: self._redis.zrem(SLOTS_KEY, holder), lambda: 0)

    def holders(self) -> int:
        """How many slots are held right now (expired ones, of drains that died, not counted)."""
        seconds, micros = self._redis.time()
        now_ms = int(seconds) * 1000 + int(micros) // 1000
        return int(self._redis.zcount(SLOTS_KEY, f"({now_ms}", "+inf"))

    def _acquire_local(self, holder: str) -> bool:
        with self._lock:
            if holder in self._local or len(self._local) < LOCAL_HOLDERS:
                self._local.add(holder)
                return True
            return False
