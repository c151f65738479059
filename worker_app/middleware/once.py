"""Run a message's work at most once per key, even when two copies of it exist.

Two copies of one piece of work can exist when a producer dies between publishing a message and
recording that it did: a scheduler leader killed mid-fire, a dead-letter replay killed mid-row. The
re-run publishes a second message with a *different* message id. Subclasses name the work (a
scheduled slot, a dead-letter row) and claim it in PostgreSQL before the actor runs: the first
message to start holds the claim, a redelivery or retry of that same message still runs
(at-least-once), and any other message for the same work is skipped without running.

If PostgreSQL cannot be reached the message runs unclaimed (degrading to at-least-once; the
monitoring job that must report a database outage still runs) and the claim is tried again after
it has been processed — and, while PostgreSQL is still down then, every ``RETRY_CLAIM_S`` on a
thread until it is recorded (for up to ``GIVE_UP_S``): the scheduler reads a scheduled message's
claim as "it started", and a claim never written would hold the job back until the scheduler
deems the fire stale (SCHEDULER_PENDING_STALE_S, an hour by default).
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from typing import Any

import dramatiq
from dramatiq.middleware import SkipMessage
from sqlalchemy.exc import SQLAlchemyError

from worker_app.db import Database

log = logging.getLogger(__name__)

RETRY_CLAIM_S = 2.0
GIVE_UP_S = 3600.0


class RunOnce(dramatiq.Middleware, ABC):
    """Claims each message's work before it runs; skips a second message for the same work.

    Subclasses say what the work is (:meth:`claim`) and how a skipped duplicate is reported
    (:meth:`on_duplicate`)."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self._unclaimed: set[str] = set()
        self._lock = threading.Lock()
        self._late: dict[str, tuple[Any, float]] = {}
        """Claims still to record after their message ran: message id → (message, give-up time)."""
        self._retrier: threading.Thread | None = None

    @abstractmethod
    def claim(self, message: Any) -> bool | None:
        """``True``: this message holds the claim; ``False``: another does; ``None``: not claimed work."""

    @abstractmethod
    def on_duplicate(self, message: Any) -> str:
        """Count and log the skipped duplicate; returns the reason for the skip."""

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        try:
            claimed = self.claim(message)
        except SQLAlchemyError as e:
            log.warning("cannot claim %s (running it unclaimed): %s", message.message_id, type(e).__name__)
            self._unclaimed.add(message.message_id)
            return
        if claimed is False:
            raise SkipMessage(self.on_duplicate(message))

    def after_process_message(
        self, broker: dramatiq.Broker, message: Any, *, result: Any = None, exception: Any = None
    ) -> None:
        if message.message_id in self._unclaimed:
            self._unclaimed.discard(message.message_id)
            if not self._try_claim(message):
                self._claim_later(message)

    def _try_claim(self, message: Any) -> bool:
        try:
            self.claim(message)
        except SQLAlchemyError:
            return False
        return True

    def _claim_later(self, message: Any) -> None:
        with self._lock:
            self._late[message.message_id] = (message, time.monotonic() + GIVE_UP_S)
            if self._retrier is None or not self._retrier.is_alive():
                self._retrier = threading.Thread(target=self._retry_late, name="claim-retry", daemon=True)
                self._retrier.start()

    def _retry_late(self) -> None:
        """Thread: record the late claims once PostgreSQL answers again; ends when none is left."""
        while True:
            time.sleep(RETRY_CLAIM_S)
            with self._lock:
                late = list(self._late.items())
            for message_id, (message, give_up_at) in late:
                claimed = self._try_claim(message)
                if claimed or time.monotonic() > give_up_at:
                    with self._lock:
                        self._late.pop(message_id, None)
                if not claimed:
                    break  # still down: the others wait for the next round, not a timeout each
            with self._lock:
                if not self._late:
                    self._retrier = None
                    return
