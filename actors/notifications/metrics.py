"""Metrics of the notifications domain, exported with the worker's other metrics.

* ``cybervpn_notifications_total{type,status}`` — sends by notification type and outcome:
  ``sent``, ``retry`` (transient failure, will be tried again), ``failed`` (permanent, or the
  last attempt), ``deferred`` (held back by a rate limit, a 429 or the open circuit breaker; not an
  attempt), ``queued`` (an on-demand send that ran out of retries and went to ``notification_queue``);
* ``cybervpn_notification_latency_seconds{type}`` — from the moment a notification was due
  (enqueued, or its ``scheduled_at``) to Telegram accepting it.

The Telegram machinery's own metrics (429s, breaker) are in :mod:`worker_app.telegram.metrics`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from worker_app.lazy import created_once

_LATENCY_BUCKETS_S = (0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600, 21600, float("inf"))


@dataclass(frozen=True)
class _Metrics:
    total: Any
    latency: Any


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
    )  # fmt: skip


def count(notification_type: str, status: str, amount: int = 1) -> None:
    """Add ``amount`` to ``cybervpn_notifications_total{type, status}``."""
    if amount:
        _metrics().total.labels(notification_type, status).inc(amount)


def observe_latency(notification_type: str, seconds: float) -> None:
    """Record one due-to-sent latency."""
    _metrics().latency.labels(notification_type).observe(max(seconds, 0.0))


def value(notification_type: str, status: str) -> float:
    """Current value of one ``cybervpn_notifications_total`` series in this process (for tests)."""
    return float(_metrics().total.labels(notification_type, status)._value.get())
