"""Trace context: every message carries a ``trace_id`` option, set by the producer or generated.

While a message runs its trace id (with actor, queue, message id and attempt) is bound to the
thread, so log lines, outgoing HTTP calls (``X-Request-ID``) and every message the actor sends
carry it too.
"""

from __future__ import annotations

import time
from typing import Any

import dramatiq

from worker_app import context, outcome


class TraceContext(dramatiq.Middleware):
    """Stamps ``trace_id`` and ``enqueued_at`` on enqueue; binds the context while a message runs."""

    def before_enqueue(self, broker: dramatiq.Broker, message: Any, delay: int | None) -> None:
        options = message.options
        if not options.get("trace_id"):
            options["trace_id"] = context.current_trace_id() or context.new_trace_id()
        options["enqueued_at"] = int(time.time() * 1000) + (delay or 0)

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        options = message.options
        trace_id = options.get("trace_id") or context.new_trace_id()
        options["trace_id"] = trace_id
        outcome.set_outcome(None)
        context.bind(
            context.MessageContext(
                trace_id=trace_id,
                actor=message.actor_name,
                queue=message.queue_name,
                message_id=message.message_id,
                attempt=options.get("retries", 0) + 1,
            )
        )

    def after_process_message(
        self, broker: dramatiq.Broker, message: Any, *, result: Any = None, exception: Any = None
    ) -> None:
        context.bind(None)

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        context.bind(None)
