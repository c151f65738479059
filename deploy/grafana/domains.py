"""One collapsed row per domain queue for the overview: its actors' throughput, failures and
processing time, its queue's depths, and the domain's own metrics (docs/operations.md)."""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Row

from deploy.grafana.panels import RATE, Panel, Query, graph, row

DOMAINS = (
    "notifications",
    "subscriptions",
    "monitoring",
    "payments",
    "analytics",
    "cleanup",
    "sync",
    "reports",
    "bulk",
    "bot_updates",
)
#: Ordered domains (worker_app.ordered): their work is in shard queues ``<domain>.NN``.
ORDERED = ("bot_updates",)
"""worker_app.policies.DOMAINS, in the order of docs/operations.md (not imported: rendering the
dashboards needs no application settings)."""


def _increase(metric: str, by: str, legend: str, title: str, description: str) -> Panel:
    return graph(
        title,
        description,
        "short",
        Query(f"sum by ({by}) (increase({metric}[{RATE}]))", legend),
        span=8,
        bars=True,
    )


def _common(queue: str) -> list[Panel]:
    shards = queue in ORDERED
    q = f'queue_name=~"{queue}\\\\.[0-9]+"' if shards else f'queue_name="{queue}"'
    depth = (
        f'sum by (state) (cybervpn_queue_depth{{queue=~"{queue}\\\\.[0-9]+"}})'
        if shards
        else (f'max by (state) (cybervpn_queue_depth{{queue="{queue}"}})')
    )
    duration = f"sum by (actor_name, le) (rate(dramatiq_message_duration_milliseconds_bucket{{{q}}}[{RATE}]))"
    return [
        graph(
            "Processed by actor",
            "Attempts finished per second.",
            "ops",
            Query(f"sum by (actor_name) (rate(dramatiq_messages_total{{{q}}}[{RATE}]))", "{{actor_name}}"),
            span=8,
        ),
        graph(
            "Failed attempts by actor",
            "Attempts that raised, per second (retries follow the domain's policy).",
            "ops",
            Query(
                f"sum by (actor_name) (rate(dramatiq_message_errors_total{{{q}}}[{RATE}]))", "{{actor_name}}"
            ),
            span=8,
        ),
        graph(
            "Processing time p95 by actor",
            "95th percentile of the time each actor ran.",
            "ms",
            Query(f"histogram_quantile(0.95, {duration})", "{{actor_name}}"),
            span=8,
        ),
        graph(
            "Queue depth",
            f"{queue}: ready, unacked, delayed (.DQ) and dead (.XQ)"
            + (", summed over its shards." if shards else "."),
            "short",
            Query(depth, "{{state}}"),
            span=8,
        ),
    ]


def _notifications() -> list[Panel]:
    latency = f"sum by (type, le) (rate(cybervpn_notification_latency_seconds_bucket[{RATE}]))"
    return [
        _increase(
            "cybervpn_notifications_total",
            "status",
            "{{status}}",
            "Sends by outcome",
            "sent, retry, failed, deferred (429 or breaker open), queued.",
        ),
        graph(
            "Due to sent p95 by type",
            "From due (inserted or scheduled) to Telegram accepting it.",
            "s",
            Query(f"histogram_quantile(0.95, {latency})", "{{type}}"),
            span=8,
        ),
    ]


def _subscriptions() -> list[Panel]:
    return [
        _increase(
            "cybervpn_subscription_users_total",
            "exported_job, outcome",
            "{{exported_job}} {{outcome}}",
            "Users handled",
            "Reminded, disabled or reset (processed), skipped, failed — per job.",
        ),
        _increase(
            "cybervpn_remnawave_malformed_users_total",
            "instance",
            "{{instance}}",
            "Malformed panel users skipped",
            "User objects that do not fit the panel's 3.x contract.",
        ),
    ]


def _monitoring() -> list[Panel]:
    return [
        graph(
            "Anomaly rules breached",
            "Breaches per rule at its last judgement (check_anomalies).",
            "short",
            Query("max by (rule) (cybervpn_anomalies)", "{{rule}}"),
            span=8,
        ),
        graph(
            "Nodes by status",
            "From the last check_server_health run.",
            "short",
            Query("sum by (status) (max by (node, status) (cybervpn_server_health))", "{{status}}"),
            span=8,
        ),
    ]


def _payments() -> list[Panel]:
    return [
        _increase(
            "cybervpn_payments_verified_total",
            "status",
            "{{status}}",
            "Payments verified by the poller",
            "verify_pending_payments: paid, already_completed, review, active, expired, too_old, error.",
        ),
        _increase(
            "cybervpn_webhooks_total",
            "outcome",
            "{{outcome}}",
            "Crypto Pay webhooks",
            "Webhook requests on worker-app serve, by outcome.",
        ),
    ]


def _analytics() -> list[Panel]:
    return [
        graph(
            "Realtime figures",
            "update_realtime_metrics' last figures.",
            "short",
            Query("max by (figure) (cybervpn_realtime)", "{{figure}}"),
            span=8,
        ),
    ]


def _cleanup() -> list[Panel]:
    return [
        _increase(
            "cybervpn_cleanup_deleted_total",
            "exported_job",
            "{{exported_job}}",
            "Rows deleted",
            "Rows (Redis keys for cleanup_stale_cache) deleted, per job.",
        ),
        graph(
            "Longest batch transaction",
            "BEGIN to COMMIT, each job's last run.",
            "s",
            Query("max by (exported_job) (cybervpn_cleanup_longest_batch_seconds)", "{{exported_job}}"),
            span=8,
        ),
    ]


def _sync() -> list[Panel]:
    return [
        _increase(
            "cybervpn_sync_total",
            "exported_job, outcome",
            "{{exported_job}} {{outcome}}",
            "Items synced",
            "Per job and outcome.",
        ),
    ]


def _reports() -> list[Panel]:
    return [
        _increase(
            "cybervpn_report_messages_total",
            "report, result",
            "{{report}} {{result}}",
            "Report messages",
            "queued, or already_queued (a re-run).",
        ),
        graph(
            "Since the last report",
            "Alert DailyReportStale past 26 h for the daily one.",
            "s",
            Query("time() - max by (report) (cybervpn_report_last_success_timestamp_seconds)", "{{report}}"),
            span=8,
        ),
        _increase(
            "cybervpn_report_recommendations_total",
            "rule",
            "{{rule}}",
            "Weekly recommendations",
            "Recommendations in weekly reports, by rule.",
        ),
    ]


def _bulk() -> list[Panel]:
    return [
        _increase(
            "cybervpn_bulk_users_total",
            "operation, result",
            "{{operation}} {{result}}",
            "Bulk user operations",
            "Users processed, by operation and result.",
        ),
        _increase(
            "cybervpn_bulk_panel_calls_total",
            "operation",
            "{{operation}}",
            "Bulk panel calls",
            "Remnawave calls of bulk user operations.",
        ),
        _increase(
            "cybervpn_bulk_broadcast_recipients_total",
            "audience, outcome",
            "{{audience}} {{outcome}}",
            "Bulk broadcast recipients",
            "queued, duplicate, without_telegram_id.",
        ),
        _increase(
            "cybervpn_exports_total",
            "export_type, result",
            "{{export_type}} {{result}}",
            "Data exports",
            "Export runs by result.",
        ),
        _increase(
            "cybervpn_export_rows_total",
            "export_type",
            "{{export_type}}",
            "Exported rows",
            "Rows written by finished exports.",
        ),
    ]


def _bot_updates() -> list[Panel]:
    webhook = f"sum by (le) (rate(cybervpn_telegram_webhook_seconds_bucket[{RATE}]))"
    return [
        _increase(
            "cybervpn_bot_updates_total",
            "outcome",
            "{{outcome}}",
            "Updates by outcome",
            "handled, retried (each in-place retry), dead, duplicate (skipped).",
        ),
        _increase(
            "cybervpn_telegram_webhook_total",
            "outcome",
            "{{outcome}}",
            "Webhook deliveries",
            "enqueued, refused (auth, size, type, shape), not_enqueued (RabbitMQ: 503, Telegram retries).",
        ),
        graph(
            "Webhook answer p99",
            "Time to answer Telegram an enqueued update, publisher confirm included.",
            "s",
            Query(f"histogram_quantile(0.99, {webhook})", "p99"),
            span=8,
        ),
    ]


_OWN = {
    "notifications": _notifications,
    "subscriptions": _subscriptions,
    "monitoring": _monitoring,
    "payments": _payments,
    "analytics": _analytics,
    "cleanup": _cleanup,
    "sync": _sync,
    "reports": _reports,
    "bulk": _bulk,
    "bot_updates": _bot_updates,
}


def domain_sections() -> list[tuple[Row, list[Panel]]]:
    """A collapsed row per domain, holding its panels."""
    return [
        (row(f"Domain: {queue}", *_common(queue), *_OWN[queue](), collapsed=True), []) for queue in DOMAINS
    ]
