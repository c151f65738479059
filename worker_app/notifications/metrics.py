"""Domain metrics of the notifications domain, exported with the worker's other metrics.

* ``cybervpn_notifications_total{type,status}`` — sends by notification type and outcome:
  ``sent``, ``retry`` (transient failure, will be tried again), ``failed`` (permanent, or the
  last attempt), ``deferred`` (held back by a rate limit, a 429 or the open circuit breaker; not an
  attempt), ``queued`` (an on-demand send that ran out of retries and went to ``notification_queue``);
* ``cybervpn_notification_latency_seconds{type}`` — from the moment a notification was due
  (enqueued, or its ``scheduled_at``) to Telegram accepting it;
* ``cybervpn_telegram_rate_limited_total`` — 429s received (each pauses every sender);
* ``cybervpn_telegram_breaker_state`` — the Telegram circuit breaker, worst of the live worker
  processes: 0 closed, 1 half-open (one probe send let through), 2 open (sends deferred);
* ``cybervpn_telegram_breaker_opens_total`` — times a breaker opened (closed → open; a failed probe
  re-opening it is not counted again);
* ``cybervpn_redis_fallback{use}`` — 1 while a use of Redis (``telegram rate limits``, ``drainer
  slots``, ``broadcast progress``, ``admin alert dedup``) runs on its process-local fallback in
  any live worker process.

Created on first use, in the worker process after the metrics middleware has pointed
prometheus-client at the run's multiprocess directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from worker_app.lazy import created_once

_LATENCY_BUCKETS_S = (0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600, 21600, float("inf"))

BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}
"""Value of ``cybervpn_telegram_breaker_state`` per state, ordered so that the max is the worst."""


@dataclass(frozen=True)
class _Metrics:
    total: Any
    latency: Any
    rate_limited: Any
    breaker_state: Any
    breaker_opens: Any
    redis_fallback: Any


@created_once
def _metrics() -> _Metrics:
    import prometheus_client as prom

    return _Metrics(
        total=prom.Counter(
            "cybervpn_notifications_total", "Notification sends by type and outcome.", ("type", "status"),
            registry=None,
        ),
        latency=prom.Histogram(
            "cybervpn_notification_latency_seconds", "From due (enqueued or scheduled) to sent.", ("type",),
            buckets=_LATENCY_BUCKETS_S, registry=None,
        ),
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
        redis_fallback=prom.Gauge(
            "cybervpn_redis_fallback", "1 while a use of Redis runs on its process-local fallback.",
            ("use",), multiprocess_mode="livemax", registry=None,
        ),
    )  # fmt: skip


def count(notification_type: str, status: str, amount: int = 1) -> None:
    """Add ``amount`` to ``cybervpn_notifications_total{type, status}``."""
    if amount:
        _metrics().total.labels(notification_type, status).inc(amount)


def observe_latency(notification_type: str, seconds: float) -> None:
    """Record one due-to-sent latency."""
    _metrics().latency.labels(notification_type).observe(max(seconds, 0.0))


def count_rate_limited() -> None:
    """Record one 429 from Telegram."""
    _metrics().rate_limited.inc()


def set_breaker_state(state: str, *, opened: bool = False) -> None:
    """Record the breaker's new state (a key of :data:`BREAKER_STATES`); ``opened`` counts an opening."""
    _metrics().breaker_state.set(BREAKER_STATES[state])
    if opened:
        _metrics().breaker_opens.inc()


def set_redis_fallback(use: str, degraded: bool) -> None:
    """Record whether ``use`` runs on its process-local fallback."""
    _metrics().redis_fallback.labels(use).set(1 if degraded else 0)


def value(notification_type: str, status: str) -> float:
    """Current value of one ``cybervpn_notifications_total`` series in this process (for tests)."""
    return float(_metrics().total.labels(notification_type, status)._value.get())


def breaker_opens() -> float:
    """``cybervpn_telegram_breaker_opens_total`` in this process (for tests)."""
    return float(_metrics().breaker_opens._value.get())
