"""Degrading one use of Redis instead of failing with it (ARCHITECTURE.md §9: Redis down loses nothing).

Every Redis use on the sending path (rate limits, drainer slots, broadcast progress, admin-alert de-
duplication, the sent journal) runs through a :class:`RedisFallback` of its own, which calls the
Redis action and, when it raises a :class:`redis.RedisError`, the use's process-local fallback
instead. While Redis is down the action is tried again at most once per ``retry_s`` (by one caller;
the others go straight to the fallback), so a hung Redis — every call blocking for the client's 5 s
socket timeout — costs one thread one timeout per interval, not every send.

One WARNING when a use falls back and one INFO when Redis answers it again, per process: an outage
is two log lines, not one per message. ``cybervpn_redis_fallback{use}`` is 1 while a use runs on its
fallback in any live worker process.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import redis

from worker_app.lazy import created_once

log = logging.getLogger(__name__)

T = TypeVar("T")


@created_once
def _fallback_gauge() -> Any:
    import prometheus_client as prom

    return prom.Gauge(
        "cybervpn_redis_fallback", "1 while a use of Redis runs on its process-local fallback.",
        ("use",), multiprocess_mode="livemax", registry=None,
    )  # fmt: skip


RETRY_REDIS_S = 5.0
"""How long a use stays on its fallback after a Redis error before one caller tries Redis again."""


class RedisFallback:
    """Whether one use of Redis works in this process; thread-safe.

    ``use`` names it in logs and metrics ("telegram rate limits"); ``fallback`` says, for the person
    reading the warning, what happens meanwhile ("sending at 5/s per process").
    """

    def __init__(
        self,
        use: str,
        fallback: str,
        *,
        retry_s: float = RETRY_REDIS_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.use = use
        self.fallback = fallback
        self.retry_s = retry_s
        self._clock = clock
        self._lock = threading.Lock()
        self._down = False
        self._retry_at = 0.0

    @property
    def degraded(self) -> bool:
        """True while this use runs on its fallback."""
        return self._down

    def run(self, action: Callable[[], T], fallback: Callable[[], T]) -> T:
        """``action()`` on Redis, or ``fallback()`` when Redis fails or is known to be down."""
        if not self._may_try():
            return fallback()
        try:
            result = action()
        except redis.RedisError as e:
            self._failed(e)
            return fallback()
        self._answered()
        return result

    def _may_try(self) -> bool:
        with self._lock:
            if not self._down:
                return True
            now = self._clock()
            if now < self._retry_at:
                return False
            self._retry_at = now + self.retry_s  # this caller probes; the others keep falling back
            return True

    def _failed(self, error: redis.RedisError) -> None:
        with self._lock:
            first = not self._down
            self._down = True
            self._retry_at = self._clock() + self.retry_s
        if first:
            _fallback_gauge().labels(self.use).set(1)
            log.warning(
                "Redis unavailable for %s (%s: %s): %s until it answers again (retried every %.0f s)",
                self.use, type(error).__name__, error, self.fallback, self.retry_s,
            )  # fmt: skip

    def _answered(self) -> None:
        if not self._down:
            return
        with self._lock:
            recovered, self._down = self._down, False
        if recovered:
            _fallback_gauge().labels(self.use).set(0)
            log.info("Redis answers again for %s: back to the shared state", self.use)
