"""CyberVPN / Scheduler: who leads, what fired, what was skipped and why, how long since each job's
last fire (docs/scheduler.md). The scheduler's ``job`` label is ``exported_job`` once scraped."""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard

from deploy.grafana.panels import RATE, Panel, Query, board, graph, row, single


def _leadership() -> list[Panel]:
    return [
        single(
            "Leaders",
            "Replicas holding the leader lock: exactly 1 is right (alert: SchedulerNoLeader).",
            "short",
            Query("sum(cybervpn_scheduler_leader) or vector(0)"),
            steps=((None, "red"), (1, "green"), (2, "red")),
            span=6,
        ),
        single(
            "Replicas scraped",
            "Scheduler processes whose metrics Prometheus reads.",
            "short",
            Query("count(cybervpn_scheduler_leader) or vector(0)"),
            steps=((None, "red"), (1, "green")),
            span=6,
        ),
        graph(
            "Leader by replica",
            "1 while a replica leads; a failover shows as a hand-over.",
            "short",
            Query("max by (instance) (cybervpn_scheduler_leader)", "{{instance}}"),
            span=12,
            height=4,
        ),
    ]


def _fires() -> list[Panel]:
    return [
        graph(
            "Fires by job",
            "Messages enqueued, by job and kind (scheduled, catch_up, immediate, manual).",
            "short",
            Query(
                f"sum by (exported_job, kind) (increase(cybervpn_scheduler_fires_total[{RATE}]))",
                "{{exported_job}} {{kind}}",
            ),
            bars=True,
        ),
        graph(
            "Skips by job and reason",
            "pending (previous message not started), duplicate, missed (beyond "
            "grace), error (PostgreSQL or RabbitMQ failed).",
            "short",
            Query(
                f"sum by (exported_job, reason) (increase(cybervpn_scheduler_skips_total[{RATE}]))",
                "{{exported_job}} {{reason}}",
            ),
            bars=True,
        ),
        graph(
            "Since the last fire",
            "Per job, on the replica that fired it.",
            "s",
            Query(
                "time() - max by (exported_job) (cybervpn_scheduler_last_fire_timestamp_seconds)",
                "{{exported_job}}",
            ),
        ),
        graph(
            "Duplicate fires dropped by workers",
            "A second message for a slot already claimed (a leader died between publish and commit).",
            "short",
            Query(
                f"sum by (exported_job) (increase(cybervpn_scheduler_duplicates_dropped_total[{RATE}]))",
                "{{exported_job}}",
            ),
            bars=True,
        ),
    ]


def dashboard() -> Dashboard:
    """The scheduler dashboard."""
    return board(
        "cybervpn-scheduler",
        "CyberVPN / Scheduler",
        "Leader election, fires, skips and time since each job's last fire.",
        [(row("Leadership"), _leadership()), (row("Fires and skips"), _fires())],
    )
