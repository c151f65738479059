"""Dead-letter recording: every message that ends dead is recorded durably.

Hooks ``before_nack``, the one place every dead path passes through in Dramatiq: retries
exhausted, permanent errors, bad arguments, age limit and unknown actors. Undecodable bodies never
become messages; the broker's consumer hands them to :meth:`DeadLetters.record_undecodable`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import dramatiq
from dramatiq.common import q_name
from dramatiq.errors import ActorNotFound

from worker_app.dead_letters import (
    DRAIN_EVERY_S,
    DeadLetterRecord,
    DeadLetterStore,
    Recorded,
    clean_options,
    describe_exception,
)

log = logging.getLogger(__name__)
OnDead = Callable[[DeadLetterRecord, Recorded], None]


class DeadLetters(dramatiq.Middleware):
    """Records each nacked message with its final exception and traceback, then hands the record to
    ``on_dead`` (the exhaustion actions of :class:`~worker_app.middleware.alerting.Alerting`)."""

    def __init__(self, store: DeadLetterStore, on_dead: OnDead | None = None) -> None:
        self.store = store
        self.on_dead = on_dead
        self._stopped = threading.Event()

    def _record(self, rec: DeadLetterRecord) -> None:
        recorded = self.store.record(rec)
        if self.on_dead is None:
            return
        try:
            self.on_dead(rec, recorded)
        except Exception:  # what follows a death must never stop its nack
            log.exception("after recording dead letter of message %s", rec.message_id)

    def after_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        """Move spooled records now, then every ``DRAIN_EVERY_S`` from a thread of its own (never
        on a message's thread: with Redis hung, a spool check would wait out its socket timeout)."""
        self.store.drain()
        self._stopped.clear()
        threading.Thread(target=self._drain_spool, name="dead-letter-spool", daemon=True).start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        self._stopped.set()

    def _drain_spool(self) -> None:
        while not self._stopped.wait(DRAIN_EVERY_S):
            self.store.drain()

    def before_nack(self, broker: dramatiq.Broker, message: Any) -> None:
        exc: BaseException | None = getattr(message, "_exception", None)
        kind, text, trace = describe_exception(exc)
        now_ms = int(time.time() * 1000)
        options = message.options
        self._record(
            DeadLetterRecord(
                message_id=message.message_id,
                queue_name=q_name(message.queue_name),
                reason=_reason(options, exc),
                actor_name=message.actor_name,
                args=list(message.args),
                kwargs=dict(message.kwargs),
                options=clean_options(options),
                exception_type=kind,
                exception_message=text,
                traceback=trace,
                attempts=options.get("retries", 0) + 1,
                first_failed_at=options.get("first_failed_at", now_ms),
                last_failed_at=options.get("last_failed_at", now_ms),
                trace_id=options.get("trace_id"),
            )
        )

    def record_undecodable(self, queue_name: str, body: bytes, error: BaseException, message_id: str) -> None:
        """Record a body that is not a Dramatiq message at all."""
        kind, text, trace = describe_exception(error)
        now_ms = int(time.time() * 1000)
        self._record(
            DeadLetterRecord(
                message_id=message_id,
                queue_name=q_name(queue_name),
                reason="undecodable",
                raw_body=body,
                exception_type=kind,
                exception_message=f"body is not a Dramatiq message: {text}",
                traceback=trace,
                first_failed_at=now_ms,
                last_failed_at=now_ms,
            )
        )


def _reason(options: dict[str, Any], exc: BaseException | None) -> str:
    if isinstance(exc, ActorNotFound):
        return "unknown_actor"
    if "dead_reason" in options:
        return str(options["dead_reason"])
    if exc is not None and "age limit" in str(exc).lower():
        return "age_limit"
    return "failed"
