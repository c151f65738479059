"""The scheduler process's Prometheus metrics, served on SCHEDULER_METRICS_PORT (0 = off; the next
free port when it is in use).

* ``cybervpn_scheduler_fires_total{job,kind}`` — messages enqueued (kind: scheduled, catch_up,
  immediate, manual);
* ``cybervpn_scheduler_skips_total{job,reason}`` — slots not enqueued: ``pending`` (the previous
  message has not started), ``duplicate`` (another process fired the slot), ``missed`` (later than
  the job's grace), ``error`` (PostgreSQL or RabbitMQ failed; logged);
* ``cybervpn_scheduler_leader`` — 1 while this process holds the lock;
* ``cybervpn_scheduler_last_fire_timestamp_seconds{job}`` — when this process last enqueued the job.
"""

from __future__ import annotations

import logging
import time
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from worker_app.middleware.metrics import bind_free_port

log = logging.getLogger(__name__)


class SchedulerMetrics:
    """The metrics of one scheduler process, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.server: WSGIServer | None = None  # while serving
        self.fires = Counter(
            "cybervpn_scheduler_fires",
            "Scheduled messages enqueued.",
            ("job", "kind"),
            registry=self.registry,
        )
        self.skips = Counter(
            "cybervpn_scheduler_skips", "Scheduled slots not enqueued, by reason.", ("job", "reason"),
            registry=self.registry,
        )  # fmt: skip
        self.leader = Gauge(
            "cybervpn_scheduler_leader", "1 while this process is the leader.", registry=self.registry
        )
        self.last_fire = Gauge(
            "cybervpn_scheduler_last_fire_timestamp_seconds", "Unix time of the job's last enqueue.",
            ("job",),
            registry=self.registry,
        )  # fmt: skip

    def fired(self, job: str, kind: str) -> None:
        self.fires.labels(job, kind).inc()
        self.last_fire.labels(job).set(time.time())

    def skipped(self, job: str, reason: str) -> None:
        self.skips.labels(job, reason).inc()

    def serve(self, port: int) -> int | None:
        """Expose the metrics on ``port``, or the next free port when it is in use (a second
        scheduler on the host); the port served, ``None`` when off or none is free. Logged, never
        fatal."""
        if port == 0:
            return None
        served = bind_free_port(
            port, lambda p: start_http_server(p, registry=self.registry), "scheduler metrics"
        )
        if served is None:
            return None
        self.server = served[0]
        used = int(self.server.server_address[1])
        log.info("scheduler metrics on http://0.0.0.0:%d/metrics", used)
        return used
