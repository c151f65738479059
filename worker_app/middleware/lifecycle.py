"""Tells long-running actors that the worker is stopping, so they end at a safe point.

Dramatiq's own shutdown notification raises an exception *inside* the actor at an arbitrary
point; a drain interrupted between Telegram accepting a batch and its commit would send the batch
twice. Instead, :class:`StopFlag` sets :attr:`Runtime.stopping` when the worker begins to shut
down, and loops such as the notification drain check it between batches.
"""

from __future__ import annotations

import threading
from typing import Any

import dramatiq


class StopFlag(dramatiq.Middleware):
    """Sets ``event`` when the worker starts shutting down."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        self.event.set()
