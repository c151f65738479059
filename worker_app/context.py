"""Per-message context shared by middleware, clients and log records.

Bound by the trace middleware before a message runs and cleared after it; read by the logging
filter, by outgoing HTTP calls (``X-Request-ID``) and by the producer side, which copies the
current trace id into every message an actor sends.
"""

from __future__ import annotations

import uuid
from contextvars import ContextVar
from typing import NamedTuple


class MessageContext(NamedTuple):
    """What every log line of the current message carries (a tuple: made for every message, and
    a frozen dataclass costs several times as much to build)."""

    trace_id: str
    actor: str | None = None
    queue: str | None = None
    message_id: str | None = None
    attempt: int | None = None


_current: ContextVar[MessageContext | None] = ContextVar("cybervpn_message_context", default=None)


def new_trace_id() -> str:
    """A fresh trace id: 32 lowercase hex characters."""
    return uuid.uuid4().hex


def current() -> MessageContext | None:
    """The context bound to this thread's current message, if any."""
    return _current.get()


def current_trace_id() -> str | None:
    """The trace id of the message being processed on this thread, if any."""
    ctx = _current.get()
    return ctx.trace_id if ctx else None


def bind(ctx: MessageContext | None) -> None:
    """Bind (or with ``None`` clear) this thread's message context."""
    _current.set(ctx)


def current_message_id() -> str:
    """The id of the Dramatiq message this thread is running; raises outside a worker."""
    from dramatiq.middleware import CurrentMessage

    message = CurrentMessage.get_current_message()
    if message is None:
        raise RuntimeError("called outside a Dramatiq worker")
    return str(message.message_id)
