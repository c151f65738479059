"""Metrics of the Telegram sending machinery, exported with the worker's other metrics.

* ``cybervpn_telegram_rate_limited_total`` — 429s received by any sender (each pauses every sender);
* ``cybervpn_telegram_breaker_state`` — the Telegram circuit breaker, worst of the live worker
  processes: 0 closed, 1 half-open (one probe send let through), 2 open (sends deferred);
* ``cybervpn_telegram_breaker_opens_total`` — times a breaker opened (closed → open; a failed probe
  re-opening it is not counted again).

Created on first use, in the worker process after the metrics middleware has pointed
prometheus-client at the run's multiprocess directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from worker_app.lazy import created_once

BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}
"""Value of ``cybervpn_telegram_breaker_state`` per state, ordered so that the max is the worst."""


@dataclass(frozen=True)
class _Metrics:
    rate_limited: Any
    breaker_state: Any
    breaker_opens: Any


@created_once
def _metrics() -> _Metrics:
    import prometheus_client as prom

    return _Metrics(
        rate_limited=prom.Counter(
            "cybervpn_telegram_rate_limited", "429 replies from Telegram.", registry=None
        ),
        breaker_state=prom.Gauge(
            "cybervpn_telegram_breaker_state", "Telegram circuit breaker: 0 closed, 1 half-open, 2 open.",
            multiprocess_mode="livemax", registry=None,
        ),
        breaker_opens=prom.Counter(
            "cybervpn_telegram_breaker_opens", "Telegram circuit breaker openings.", registry=None
        ),
    )  # fmt: skip


def count_rate_limited() -> None:
    """Record one 429 from Telegram."""
    _metrics().rate_limited.inc()


def set_breaker_state(state: str, opened: bool = False) -> None:
    """Record the breaker's new state (a key of :data:`BREAKER_STATES`); ``opened`` counts an opening."""
    _metrics().breaker_state.set(BREAKER_STATES[state])
    if opened:
        _metrics().breaker_opens.inc()


def breaker_opens() -> float:
    """``cybervpn_telegram_breaker_opens_total`` in this process (for tests)."""
    return float(_metrics().breaker_opens._value.get())
