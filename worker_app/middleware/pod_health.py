"""The worker side of pod-local health (:mod:`worker_app.health`): every worker process checks
itself every WRITE_EVERY_S and writes its snapshot for the metrics process to serve as ``/healthz``
and ``/readyz`` on METRICS_PORT.

* alive: the checker's own beat (a process whose interpreter hangs stops writing), and every consumer
  and worker thread of Dramatiq's still running;
* ready: besides, every consumer's RabbitMQ connection open (Dramatiq's consumer thread reconnects
  on its own; until it has, the pod takes no new work), PostgreSQL answering ``SELECT 1`` (checked
  on a thread of its own, so a hung database makes the process not ready, never not alive), and not
  shutting down.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

import dramatiq

from worker_app.db import Database
from worker_app.health import (
    HEALTH_DIR,
    WRITE_EVERY_S,
    DependencyChecker,
    Health,
    ping_database,
    write_snapshot,
)
from worker_app.middleware.metrics import run_directory

log = logging.getLogger(__name__)


class PodHealth(dramatiq.Middleware):
    """Writes this worker process's health snapshot (see the module)."""

    def __init__(self, database: Database, metrics_dir: Path) -> None:
        self.database = database
        self.metrics_dir = metrics_dir
        self.health = Health()
        self._stop = threading.Event()
        self._directory: Path | None = None
        self._postgresql = DependencyChecker(
            self.health, {"postgresql": lambda: ping_database(database)}, name="health-postgresql"
        )

    def after_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        self._directory = run_directory(self.metrics_dir) / HEALTH_DIR
        self._postgresql.start()
        threading.Thread(target=lambda: self._check_loop(worker), name="health-check", daemon=True).start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        self.health.stopping = True
        self._write()

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        self._stop.set()
        self._postgresql.stop()
        if self._directory is not None:
            (self._directory / f"{os.getpid()}.json").unlink(missing_ok=True)

    def check(self, worker: Any) -> None:
        """One look at the worker's threads and connections."""
        consumers = list(getattr(worker, "consumers", {}).values())
        threads = consumers + list(getattr(worker, "workers", []))
        if all(t.is_alive() for t in threads):
            self.health.beat("threads")
        self.health.beat("process")
        closed = sorted(c.queue_name for c in consumers if not _connected(c))
        self.health.report("rabbitmq", f"not connected: {', '.join(closed)}" if closed else None)

    def _check_loop(self, worker: Any) -> None:
        while not self._stop.is_set():
            try:
                self.check(worker)
                self._write()
            except Exception:  # the checker must outlive any surprise; a stale file says it died
                log.exception("worker health check failed")
            self._stop.wait(WRITE_EVERY_S)

    def _write(self) -> None:
        if self._directory is not None:
            write_snapshot(self._directory, self.health, os.getpid())


def _connected(consumer_thread: Any) -> bool:
    connection = getattr(getattr(consumer_thread, "consumer", None), "connection", None)
    return bool(getattr(connection, "is_open", False))
