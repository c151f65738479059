"""Fleet-wide counts over a sliding window, in per-minute Redis buckets.

``RollingCounts(client, "tasks").add({"payments:failed": 2}, now)`` adds to the bucket of ``now``'s
minute; ``window(900, now)`` sums the buckets of the last 15 minutes. Each process adds what it
counted since its last flush (the worker heartbeat flushes every few seconds), so a message costs
no Redis call of its own.

Redis keys: ``cybervpn:counts:<name>:<unix minute>`` (hash: field → count), expiring
``keep_s`` after their minute (a day by default: the longest window a rule may ask for).
"""

from __future__ import annotations

from collections.abc import Mapping

import redis

from worker_app.redis_client import key

KEEP_S = 86_400 + 120


class RollingCounts:
    def __init__(self, client: redis.Redis, name: str, *, keep_s: int = KEEP_S) -> None:
        self.redis = client
        self.name = name
        self.keep_s = keep_s

    def bucket_key(self, minute: int) -> str:
        return key("counts", self.name, str(minute))

    def add(self, counts: Mapping[str, int], now: float) -> None:
        """Add ``counts`` to ``now``'s minute; raises :class:`redis.RedisError` (nothing added)."""
        counts = {f: n for f, n in counts.items() if n}
        if not counts:
            return
        minute = int(now // 60)
        bucket = self.bucket_key(minute)
        with self.redis.pipeline(transaction=True) as pipe:
            for field, n in counts.items():
                pipe.hincrby(bucket, field, n)
            pipe.expireat(bucket, (minute + 1) * 60 + self.keep_s)
            pipe.execute()

    def window(self, seconds: int, now: float) -> dict[str, int]:
        """The sums over the minutes that end within the last ``seconds`` (the current minute
        included); raises :class:`redis.RedisError`."""
        last = int(now // 60)
        minutes = range(last - max(1, seconds // 60) + 1, last + 1)
        with self.redis.pipeline(transaction=False) as pipe:
            for minute in minutes:
                pipe.hgetall(self.bucket_key(minute))
            buckets = pipe.execute()
        total: dict[str, int] = {}
        for bucket in buckets:
            for field, n in bucket.items():
                total[str(field)] = total.get(str(field), 0) + int(n)
        return total
