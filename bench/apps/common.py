"""The completion counter every contender's no-op actor/task calls, identically.

One ``INCR`` per message on ``<BENCH_KEY>:count``. The message whose ``INCR`` returns 1 stamps
``<BENCH_KEY>:first``, the (N/2)-th stamps ``:mid`` and the N-th (``BENCH_TARGET``) stamps
``:last`` (wall-clock seconds), so the measured window is first completion → N-th completion,
excluding process start-up; ``:mid`` → ``:last`` is the second half alone.
Settings come from the environment the benchmark gives each worker.
"""

from __future__ import annotations

import os
import time

import redis

KEY = os.environ.get("BENCH_KEY", "bench:manual")
TARGET = int(os.environ.get("BENCH_TARGET", "0"))

_clients: dict[int, redis.Redis] = {}


def _redis() -> redis.Redis:
    """One pooled client per process, created on first use (after any fork)."""
    pid = os.getpid()
    client = _clients.get(pid)
    if client is None:
        client = _clients[pid] = redis.Redis.from_url(
            os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
        )
    return client


def record_completion() -> None:
    """Count one completed message; stamp the first and the N-th."""
    client = _redis()
    count = int(client.incr(f"{KEY}:count"))
    if count == 1:
        client.set(f"{KEY}:first", repr(time.time()), nx=True)
    if count == TARGET // 2:
        client.set(f"{KEY}:mid", repr(time.time()), nx=True)
    if count == TARGET:
        client.set(f"{KEY}:last", repr(time.time()), nx=True)
