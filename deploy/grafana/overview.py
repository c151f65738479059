"""CyberVPN / Overview: the whole worker at a glance — throughput, failures, processing time, queue
depths (ready, unacked, delayed, dead), time in queue, dead letters and admin alerts — then one
collapsed row per domain (:mod:`deploy.grafana.domains`). ``$queue`` filters the queue panels."""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard

from deploy.grafana.domains import domain_sections
from deploy.grafana.panels import RATE, Panel, Query, board, graph, queue_variable, row, single

Q = 'queue_name=~"$queue"'
"""The dramatiq_* series' queue label, filtered by ``$queue``."""
QD = 'queue=~"$queue"'
"""The queue-depth, consumer and dead-letter series' queue label, filtered by ``$queue``."""


def _now() -> list[Panel]:
    processed = f"sum(rate(dramatiq_messages_total{{{Q}}}[{RATE}]))"
    failed = f"sum(rate(dramatiq_message_errors_total{{{Q}}}[{RATE}]))"
    return [
        single("Messages processed", "Attempts finished per second, all actors.", "ops", Query(processed)),
        single(
            "Attempts failing",
            "Share of attempts that raised (retried ones too).",
            "percentunit",
            Query(f"{failed} / {processed}"),
            steps=((None, "green"), (0.01, "orange"), (0.05, "red")),
        ),
        single(
            "Ready messages",
            "Messages waiting in the domain queues (max over the worker views).",
            "short",
            Query(f'sum(max by (queue) (cybervpn_queue_depth{{state="ready",{QD}}}))'),
            steps=((None, "green"), (100, "orange"), (500, "red")),
        ),
        single(
            "Dead letters in .XQ",
            "RabbitMQ's dead-letter copies (replayed and discarded ones until they "
            "expire); `worker-app dlq list` for the open ones.",
            "short",
            Query(f'sum(max by (queue) (cybervpn_queue_depth{{state="dead",{QD}}}))'),
            steps=((None, "green"), (1, "orange")),
        ),
        single(
            "Queues without consumer",
            "Domain queues no worker consumes.",
            "short",
            Query(f"count(max by (queue) (cybervpn_queue_consumers{{{QD}}}) == 0) or vector(0)"),
            steps=((None, "green"), (1, "red")),
        ),
        single(
            "Scheduler leaders",
            "Scheduler replicas holding the leader lock: 1 is right.",
            "short",
            Query("sum(cybervpn_scheduler_leader) or vector(0)"),
            steps=((None, "red"), (1, "green"), (2, "red")),
        ),
    ]


def _throughput() -> list[Panel]:
    duration = f"sum by (queue_name, le) (rate(dramatiq_message_duration_milliseconds_bucket{{{Q}}}[{RATE}]))"
    return [
        graph(
            "Messages processed by queue",
            "Attempts finished per second.",
            "ops",
            Query(f"sum by (queue_name) (rate(dramatiq_messages_total{{{Q}}}[{RATE}]))", "{{queue_name}}"),
        ),
        graph(
            "Failures by queue",
            "Attempts that raised, retries enqueued and messages dead-lettered, per second.",
            "ops",
            Query(
                f"sum by (queue_name) (rate(dramatiq_message_errors_total{{{Q}}}[{RATE}]))",
                "{{queue_name}} raised",
            ),
            Query(
                f"sum by (queue_name) (rate(dramatiq_message_retries_total{{{Q}}}[{RATE}]))",
                "{{queue_name}} retried",
            ),
            Query(
                f"sum by (queue_name) (rate(dramatiq_message_dead_total{{{Q}}}[{RATE}]))",
                "{{queue_name}} dead",
            ),
        ),
        graph(
            "Processing time p95 by queue",
            "95th percentile of the time actors ran.",
            "ms",
            Query(f"histogram_quantile(0.95, {duration})", "{{queue_name}}"),
        ),
        graph(
            "Messages in progress",
            "Being processed now, and delayed messages held in worker memory (ETA not reached).",
            "short",
            Query(f"sum by (queue_name) (dramatiq_messages_inprogress{{{Q}}})", "{{queue_name}} running"),
            Query(
                f"sum by (queue_name) (dramatiq_delayed_messages_inprogress{{{Q}}})",
                "{{queue_name}} delayed in memory",
            ),
        ),
    ]


def _depth(state: str, title: str, description: str) -> Panel:
    query = Query(f'max by (queue) (cybervpn_queue_depth{{state="{state}",{QD}}})', "{{queue}}")
    return graph(title, description, "short", query, span=8)


def _queues() -> list[Panel]:
    waited = f"sum by (queue_name, le) (rate(cybervpn_message_time_in_queue_seconds_bucket{{{Q}}}[{RATE}]))"
    return [
        _depth("ready", "Ready", "Messages waiting for a consumer (alert: QueueBacklogHigh above 500)."),
        _depth("unacked", "Unacked", "Delivered to a worker and not acknowledged yet (management API only)."),
        _depth("delayed", "Delayed (.DQ)", "Retries and delayed sends waiting for their ETA."),
        _depth("dead", "Dead (.XQ)", "RabbitMQ's dead-letter copies (alert: DeadLettersGrowing)."),
        graph(
            "Consumers",
            "Consumers per queue (alert: QueueWithoutConsumer at 0).",
            "short",
            Query(f"max by (queue) (cybervpn_queue_consumers{{{QD}}})", "{{queue}}"),
            span=8,
        ),
        graph(
            "Time in queue p95",
            "From enqueue (or the end of its delay) to the start of processing.",
            "s",
            Query(f"histogram_quantile(0.95, {waited})", "{{queue_name}}"),
            span=8,
        ),
    ]


def _dead_letters_and_alerts() -> list[Panel]:
    return [
        graph(
            "Dead letters recorded",
            "Messages recorded dead, by queue and reason (each once).",
            "short",
            Query(
                f"sum by (queue, reason) (increase(cybervpn_dead_letters_total{{{QD}}}[{RATE}]))",
                "{{queue}} {{reason}}",
            ),
            span=8,
            bars=True,
        ),
        graph(
            "Admin alerts",
            "Alerts raised (before de-duplication) and the messages sent to the admins.",
            "short",
            Query(f"sum by (severity) (increase(cybervpn_alerts_total[{RATE}]))", "raised {{severity}}"),
            Query(
                f"sum by (result) (increase(cybervpn_alert_messages_total[{RATE}]))", "messages {{result}}"
            ),
            Query(f"sum(increase(cybervpn_alerts_dropped_total[{RATE}]))", "dropped (buffer full)"),
            span=8,
            bars=True,
        ),
        graph(
            "Redis fallbacks in use",
            "1 while a use of Redis runs on its per-process fallback (Redis down) in some worker process.",
            "short",
            Query("max by (use) (cybervpn_redis_fallback)", "{{use}}"),
            span=8,
        ),
    ]


def dashboard() -> Dashboard:
    """The overview dashboard."""
    sections = [
        (row("Now"), _now()),
        (row("Throughput, failures and processing time"), _throughput()),
        (row("Queues"), _queues()),
        (row("Dead letters and admin alerts"), _dead_letters_and_alerts()),
        *domain_sections(),
    ]
    return board(
        "cybervpn-overview",
        "CyberVPN / Overview",
        "Throughput, failures, processing time, queue depths, time in queue, dead letters; a row per domain.",
        sections,
        variables=[queue_variable()],
    )
