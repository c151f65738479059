"""CyberVPN / Business: notifications sent, payments (poller and webhooks), nodes online, the
realtime figures and subscription jobs."""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard

from deploy.grafana.panels import RANGE, RATE, Panel, Query, board, graph, row, single

NODES = "max by (node, status) (cybervpn_server_health)"


def _now() -> list[Panel]:
    return [
        single(
            "Notifications sent",
            "In the selected range.",
            "short",
            Query(f'sum(increase(cybervpn_notifications_total{{status="sent"}}[{RANGE}]))'),
        ),
        single(
            "Payments completed by the poller",
            "verify_pending_payments found them paid (range).",
            "short",
            Query(f'sum(increase(cybervpn_payments_verified_total{{status="paid"}}[{RANGE}]))'),
        ),
        single(
            "Webhooks enqueued",
            "Crypto Pay webhooks handed to process_payment_completion (range).",
            "short",
            Query(f'sum(increase(cybervpn_webhooks_total{{outcome="enqueued"}}[{RANGE}]))'),
        ),
        single(
            "Nodes online",
            "From the last health run.",
            "short",
            Query('sum(max by (node) (cybervpn_server_health{status="online"}))'),
        ),
        single(
            "Nodes offline",
            "Alert NodeOffline after 5 minutes.",
            "short",
            Query('sum(max by (node) (cybervpn_server_health{status="offline"}))'),
            steps=((None, "green"), (1, "red")),
        ),
        single(
            "Online users",
            "update_realtime_metrics (every 30 s).",
            "short",
            Query('max(cybervpn_realtime{figure="online_users"})'),
        ),
    ]


def _trends() -> list[Panel]:
    return [
        graph(
            "Notifications sent by type",
            "Per second.",
            "ops",
            Query(f'sum by (type) (rate(cybervpn_notifications_total{{status="sent"}}[{RATE}]))', "{{type}}"),
        ),
        graph(
            "Payments verified by status",
            "verify_pending_payments: paid, expired, too_old, review, error…",
            "short",
            Query(f"sum by (status) (increase(cybervpn_payments_verified_total[{RATE}]))", "{{status}}"),
            bars=True,
        ),
        graph(
            "Webhooks by outcome",
            "Crypto Pay webhook requests on worker-app serve.",
            "short",
            Query(f"sum by (outcome) (increase(cybervpn_webhooks_total[{RATE}]))", "{{outcome}}"),
            bars=True,
        ),
        graph(
            "Payment failure anomaly",
            "1 while the app's payment failure rate is above its threshold (alert: PaymentFailureRateHigh).",
            "short",
            Query('max(cybervpn_anomalies{rule="payment_failure"})', "breached"),
        ),
        graph(
            "Nodes by status",
            "online, offline, warning, maintenance.",
            "short",
            Query(f"sum by (status) ({NODES})", "{{status}}"),
            stacked=True,
        ),
        graph(
            "Online users and active servers",
            "update_realtime_metrics' figures.",
            "short",
            Query('max(cybervpn_realtime{figure="online_users"})', "online users"),
            Query('max(cybervpn_realtime{figure="active_servers"})', "active servers"),
        ),
        graph(
            "Bandwidth",
            "update_realtime_metrics' figure.",
            "Bps",
            Query('max(cybervpn_realtime{figure="bandwidth_bytes_per_s"})', "bandwidth"),
        ),
        graph(
            "Subscription jobs",
            "Users reminded, disabled or reset (processed), skipped, failed.",
            "short",
            Query(
                f"sum by (exported_job, outcome) (increase(cybervpn_subscription_users_total[{RATE}]))",
                "{{exported_job}} {{outcome}}",
            ),
            bars=True,
        ),
    ]


def dashboard() -> Dashboard:
    """The business dashboard."""
    return board(
        "cybervpn-business",
        "CyberVPN / Business",
        "Notifications sent, payments, nodes online, users and bandwidth.",
        [(row("In the selected range and now"), _now()), (row("Trends"), _trends())],
    )
