"""One log line per processed message: actor, queue, message_id, trace_id, attempt, duration_ms,
outcome (success, retry, dead, skipped). The context fields come from the logging filter."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import dramatiq

from worker_app import outcome

log = logging.getLogger("worker_app.messages")


class EventLog(dramatiq.Middleware):
    """Logs how each message ended and how long it took."""

    def __init__(self) -> None:
        self._local = threading.local()  # start time of the message on this worker thread

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        self._local.started = time.perf_counter()

    def after_process_message(
        self, broker: dramatiq.Broker, message: Any, *, result: Any = None, exception: Any = None
    ) -> None:
        self._log(message, exception)

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        self._log(message, None)

    def _log(self, message: Any, exception: BaseException | None) -> None:
        started, self._local.started = getattr(self._local, "started", None), None
        if not log.isEnabledFor(logging.INFO):
            return
        duration_ms = round((time.perf_counter() - started) * 1000, 2) if started is not None else None
        result = outcome.get_outcome() or (outcome.DEAD if message.failed else outcome.SUCCESS)
        level = logging.INFO if result in (outcome.SUCCESS, outcome.SKIPPED) else logging.WARNING
        log.log(
            level,
            "message %s",
            result,
            extra={
                "event": "message_processed",
                "outcome": result,
                "duration_ms": duration_ms,
                "error": f"{type(exception).__name__}: {exception}" if exception is not None else None,
            },
        )
