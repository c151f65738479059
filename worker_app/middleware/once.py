"""Run a message's work at most once per key, even when two copies of it exist.

Two copies of one piece of work can exist when a producer dies between publishing a message and
recording that it did: a scheduler leader killed mid-fire, a dead-letter replay killed mid-row. The
re-run publishes a second message with a *different* message id. Subclasses name the work (a
scheduled slot, a dead-letter row) and claim it in PostgreSQL before the actor runs: the first
message to start holds the claim, a redelivery or retry of that same message still runs
(at-least-once), and any other message for the same work is skipped without running.

If PostgreSQL cannot be reached the message runs unclaimed (degrading to at-least-once; the
monitoring job that must report a database outage still runs) and the claim is tried again after
it has been processed.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from contextlib import suppress
from typing import Any

import dramatiq
from dramatiq.middleware import SkipMessage
from sqlalchemy.exc import SQLAlchemyError

from worker_app.db import Database

log = logging.getLogger(__name__)


class RunOnce(dramatiq.Middleware, ABC):
    """Claims each message's work before it runs; skips a second message for the same work.

    Subclasses say what the work is (:meth:`claim`) and how a skipped duplicate is reported
    (:meth:`on_duplicate`)."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self._unclaimed: set[str] = set()

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
            with suppress(SQLAlchemyError):
                self.claim(message)
