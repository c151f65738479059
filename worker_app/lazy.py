"""``created_once``: a value made on first use, once per process, whichever thread asks first.

Prometheus metrics are created on first use (after the metrics middleware has pointed
prometheus-client at the run's multiprocess directory). ``functools.cache`` is not enough for them:
two threads missing the cache at once would both create a Counter of the same name, and the second
raises ``Duplicated timeseries``.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def created_once(factory: Callable[[], T]) -> Callable[[], T]:
    """``factory()`` the first time, under a lock; the same object afterwards."""
    lock = threading.Lock()
    made: list[T] = []

    @functools.wraps(factory)
    def get() -> T:
        if not made:
            with lock:
                if not made:
                    made.append(factory())
        return made[0]

    return get
