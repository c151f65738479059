"""The scheduler process's Prometheus metrics, served on SCHEDULER_METRICS_PORT (0 = off; the next
free port when it is in use).

* ``cybervpn_scheduler_fires_total{job,kind}`` — messages enqueued (kind: scheduled, catch_up,
  immediate, manual);
* ``cybervpn_scheduler_skips_total{job,reason}`` — slots not enqueued: ``pending`` (the previous
  message has not started), ``duplicate`` (another process fired the slot), ``missed`` (later than
  the job's grace), ``error`` (PostgreSQL or RabbitMQ failed; logged);
* ``cybervpn_scheduler_leader`` — 1 while this process holds the lock;
* ``cybervpn_scheduler_last_fire_timestamp_seconds{job}`` — when this process last enqueued the job.

The same port answers the pod-local probes ``/healthz`` and ``/readyz`` (:mod:`worker_app.health`).
"""

from __future__ import annotations

import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest

from worker_app.health import Health, probe
from worker_app.middleware.metrics import bind_free_port

log = logging.getLogger(__name__)


class SchedulerMetrics:
    """The metrics of one scheduler process, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.server: ThreadingHTTPServer | None = None  # while serving
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

    def serve(self, port: int, health: Health | None = None) -> int | None:
        """Expose the metrics (and, with ``health``, the pod-local ``/healthz`` and ``/readyz``) on
        ``port``, or the next free port when it is in use (a second scheduler on the host); the port
        served, ``None`` when off or none is free. Logged, never fatal."""
        if port == 0:
            return None
        handler = _handler(self.registry, health)
        served = bind_free_port(
            port, lambda p: ThreadingHTTPServer(("0.0.0.0", p), handler), "scheduler metrics"
        )
        if served is None:
            return None
        self.server = served
        threading.Thread(target=served.serve_forever, name="scheduler-metrics", daemon=True).start()
        used = int(served.server_address[1])
        log.info("scheduler metrics on http://0.0.0.0:%d/metrics", used)
        return used


def _handler(registry: CollectorRegistry, health: Health | None) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            probed = probe(health, self.path) if health is not None else None
            if probed is not None:
                status, body, kind = *probed, "application/json"
            else:
                status, body, kind = 200, generate_latest(registry), CONTENT_TYPE_LATEST
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug(format, *args)

    return Handler
