"""How the current message ended (success, retry, dead…), set by the retry middleware and read by
the log and metrics middleware, which run their after-hooks later."""

from __future__ import annotations

from contextvars import ContextVar

SUCCESS = "success"
RETRY = "retry"
DEAD = "dead"
SKIPPED = "skipped"

_outcome: ContextVar[str | None] = ContextVar("cybervpn_outcome", default=None)


def set_outcome(value: str | None) -> None:
    """Record how the current message ended (``None`` clears it)."""
    _outcome.set(value)


def get_outcome() -> str | None:
    """How the current message ended, if the retry middleware has decided."""
    return _outcome.get()
