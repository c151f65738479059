"""CyberVPN / Telegram: sending to Telegram — sends by outcome and type, 429s, the circuit breaker,
due-to-sent latency, the notifications queue and admin alert messages."""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard

from deploy.grafana.panels import BREAKER_STATES, RATE, Panel, Query, board, graph, row, single

LATENCY = f"sum by (le) (rate(cybervpn_notification_latency_seconds_bucket[{RATE}]))"


def _state() -> list[Panel]:
    return [
        single(
            "Breaker",
            "Worst of the live worker processes (alert: TelegramBreakerOpen).",
            "none",
            Query("max(cybervpn_telegram_breaker_state) or vector(0)"),
            mappings=BREAKER_STATES,
            span=6,
        ),
        single(
            "Telegram probe",
            "check_external_services' last getMe (1 up, 0 down).",
            "none",
            Query('max(cybervpn_service_up{service="telegram"})'),
            mappings={0: ("down", "red"), 1: ("up", "green")},
            span=6,
        ),
        single(
            "429s in range",
            "Rate-limit replies (each pauses every sender for its retry_after).",
            "short",
            Query("sum(increase(cybervpn_telegram_rate_limited_total[$__range]))"),
            steps=((None, "green"), (1, "orange")),
            span=6,
        ),
        single(
            "Sent in range",
            "Notifications Telegram accepted.",
            "short",
            Query('sum(increase(cybervpn_notifications_total{status="sent"}[$__range]))'),
            span=6,
        ),
    ]


def _sending() -> list[Panel]:
    return [
        graph(
            "Sends by outcome",
            "sent, retry, failed, deferred (429 or breaker open), queued, per second.",
            "ops",
            Query(f"sum by (status) (rate(cybervpn_notifications_total[{RATE}]))", "{{status}}"),
        ),
        graph(
            "Sent by type",
            "Per second.",
            "ops",
            Query(f'sum by (type) (rate(cybervpn_notifications_total{{status="sent"}}[{RATE}]))', "{{type}}"),
        ),
        graph(
            "429s and breaker openings",
            "Rate-limit replies, and breaker openings (closed to open).",
            "short",
            Query(f"sum(increase(cybervpn_telegram_rate_limited_total[{RATE}]))", "429"),
            Query(f"sum(increase(cybervpn_telegram_breaker_opens_total[{RATE}]))", "breaker opened"),
            bars=True,
        ),
        graph(
            "Breaker state",
            "0 closed, 1 half-open (one probe allowed), 2 open (sends deferred).",
            "none",
            Query("max(cybervpn_telegram_breaker_state)", "state"),
        ),
        graph(
            "Due to sent",
            "From due (inserted or scheduled) to Telegram accepting it.",
            "s",
            Query(f"histogram_quantile(0.5, {LATENCY})", "p50"),
            Query(f"histogram_quantile(0.95, {LATENCY})", "p95"),
            Query(f"histogram_quantile(0.99, {LATENCY})", "p99"),
        ),
        graph(
            "Notifications queue",
            "Attempts of the notifications actors per second, and ready messages.",
            "short",
            Query(
                f'sum by (actor_name) (rate(dramatiq_messages_total{{queue_name="notifications"}}[{RATE}]))',
                "{{actor_name}}",
            ),
            Query('max(cybervpn_queue_depth{queue="notifications",state="ready"})', "ready"),
        ),
        graph(
            "Admin alert messages",
            "Alert messages to the admins: sent, failed, dropped.",
            "short",
            Query(f"sum by (result) (increase(cybervpn_alert_messages_total[{RATE}]))", "{{result}}"),
            bars=True,
        ),
        graph(
            "Telegram probe latency",
            "check_external_services' getMe.",
            "s",
            Query('max(cybervpn_service_latency_seconds{service="telegram"})', "getMe"),
        ),
    ]


def dashboard() -> Dashboard:
    """The Telegram sending dashboard."""
    return board(
        "cybervpn-telegram",
        "CyberVPN / Telegram",
        "Sends by outcome, 429s, the circuit breaker and due-to-sent latency.",
        [(row("Now"), _state()), (row("Sending"), _sending())],
    )
