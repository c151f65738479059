"""Does any worker consume a job's queue? The scheduler does not fire a job nobody would run.

One image serves every deployment (``WORKER_QUEUES``, ``ENABLE_<DOMAIN>``): a deployment without a
``reports`` worker must not pile report jobs into a queue nobody reads. Every worker process stamps
the domain queues it consumes in ``cybervpn:queues:consumed`` at each heartbeat
(:mod:`worker_app.workers`); a queue stamped within ``SCHEDULER_CONSUMER_GRACE_S`` (a day) counts as
enabled somewhere — long enough that a worker group down for a while, or being redeployed, never
costs a fire. When nothing is known (no worker has beaten since Redis was emptied, or Redis is down) every
job fires: not firing would lose work, firing at worst queues it.
"""

from __future__ import annotations

import logging
import time

import redis

from worker_app.workers import consumed_queues

log = logging.getLogger(__name__)
#: How long one look at Redis is reused (the scheduler fires at most a few jobs a second).
CACHE_S = 10.0


class ConsumedQueues:
    """The queues some worker consumed lately, looked up at most every :data:`CACHE_S`."""

    def __init__(self, client: redis.Redis, grace_s: float) -> None:
        self.client = client
        self.grace_s = grace_s
        self._cached: tuple[float, dict[str, float] | None] | None = None

    def known(self) -> dict[str, float] | None:
        """Queue -> last consumed (unix time); ``None`` when nothing is known (then all fire)."""
        now = time.monotonic()
        if self._cached is None or now - self._cached[0] > CACHE_S:
            try:
                found: dict[str, float] | None = consumed_queues(self.client, self.grace_s) or None
            except redis.RedisError as e:
                log.warning("which queues are consumed is unknown (Redis: %s); every job fires", e)
                found = None
            self._cached = (now, found)
        return self._cached[1]

    def unconsumed(self, queue: str) -> bool:
        """``True`` only when workers are known and none consumed ``queue`` within the grace."""
        known = self.known()
        return known is not None and queue not in known
