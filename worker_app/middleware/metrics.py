"""Prometheus metrics for every worker process, served on METRICS_PORT by one exposition process.

Dramatiq's own metric names are kept (``dramatiq_messages_total`` …) so existing dashboards work,
plus ``cybervpn_message_time_in_queue_seconds``. Worker processes write prometheus-client
multiprocess files into a directory private to this run of ``dramatiq`` (named after the parent
process and its start time); directories of earlier runs are wiped at boot, so stale files never
inflate counters — a hazard of Dramatiq's own Prometheus middleware.

The per-message figures (processed, errors, in progress, duration, time in queue) are counted in
plain per-thread tallies and added to the prometheus-client values by one thread every
``FLUSH_INTERVAL_S`` (and at shutdown): a multiprocess value takes a lock and an mmap write per
increment, about ten per message, which was the most expensive part of the middleware stack on a
short message. A scrape therefore shows a message at most that long after it ended.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import shutil
import threading
import time
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import dramatiq
from dramatiq.common import q_name

log = logging.getLogger(__name__)
FLUSH_INTERVAL_S = 1.0
PORTS_TRIED = 11  # the configured port and the ten after it
_Server = TypeVar("_Server")
_LABELS = ("queue_name", "actor_name")
_DURATION_BUCKETS_MS = (
    5,
    10,
    25,
    50,
    75,
    100,
    250,
    500,
    750,
    1000,
    2500,
    5000,
    7500,
    10000,
    30000,
    60000,
    600000,
    900000,
    float("inf"),
)
_QUEUE_BUCKETS_S = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, float("inf"))


def _process_start_ticks(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def run_directory(base: Path) -> Path:
    """This run's directory: one per parent process (the ``dramatiq`` main process)."""
    parent = os.getppid()
    return base / f"run-{parent}-{_process_start_ticks(parent) or 0}"


def wipe_stale_runs(base: Path, keep: Path, prefix: str = "run") -> None:
    """Remove the directories of runs (``<prefix>-<pid>-<start ticks>``) whose process is gone."""
    if not base.exists():
        return
    for entry in base.glob(f"{prefix}-*"):
        if entry == keep:
            continue
        _, pid, ticks = entry.name.split("-", 2)
        if _process_start_ticks(int(pid)) != ticks:
            shutil.rmtree(entry, ignore_errors=True)


def prepare_multiprocess_dir(base: Path) -> Path:
    """Create this run's directory, wipe stale ones and point prometheus-client at it.

    Must run before ``prometheus_client`` is first imported in the process.
    """
    run_dir = run_directory(base)
    wipe_stale_runs(base, keep=run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(run_dir)
    return run_dir


def prepare_own_metrics_dir(base: Path, prefix: str) -> Path:
    """A single process's multiprocess directory (``worker-app serve``): ``<prefix>-<pid>-<ticks>``
    under ``base``, stale ones of gone processes wiped. Before ``prometheus_client`` is imported."""
    pid = os.getpid()
    own = base / f"{prefix}-{pid}-{_process_start_ticks(pid) or 0}"
    wipe_stale_runs(base, keep=own, prefix=prefix)
    own.mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(own)
    return own


def exposition() -> tuple[bytes, str]:
    """This process's metrics (every process of its multiprocess directory, when it has one)."""
    import prometheus_client as prom
    from prometheus_client import multiprocess

    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        return prom.generate_latest(prom.REGISTRY), prom.CONTENT_TYPE_LATEST
    registry = prom.CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return prom.generate_latest(registry), prom.CONTENT_TYPE_LATEST


class Metrics(dramatiq.Middleware):
    """Counts, times and gauges messages per queue and actor."""

    def __init__(self, base_dir: Path, port: int) -> None:
        self.base_dir = base_dir
        self.port = port
        self.multiproc_dir: Path | None = None
        self._local = threading.local()  # this worker thread's tallies, and its message's tally and start
        self._cache: dict[tuple[str, str], _Series] = {}
        self._tallies: list[tuple[tuple[str, str], _Tally, _Tally]] = []  # (key, tally, flushed)
        self._flush_lock = threading.Lock()
        self._stop_flushing = threading.Event()

    def after_process_boot(self, broker: dramatiq.Broker) -> None:
        """Create the metrics in a worker process (never in CLI or API processes)."""
        self.multiproc_dir = prepare_multiprocess_dir(self.base_dir)
        import prometheus_client as prom

        self.total = prom.Counter("dramatiq_messages_total", "Messages processed.", _LABELS, registry=None)
        self.errored = prom.Counter(
            "dramatiq_message_errors_total", "Messages that raised.", _LABELS, registry=None
        )
        self.retried = prom.Counter(
            "dramatiq_message_retries_total", "Retries enqueued.", _LABELS, registry=None
        )
        self.dead = prom.Counter(
            "dramatiq_message_dead_total", "Messages dead-lettered.", _LABELS, registry=None
        )
        self.inprogress = prom.Gauge(
            "dramatiq_messages_inprogress",
            "Messages being processed.",
            _LABELS,
            multiprocess_mode="livesum",
            registry=None,
        )
        self.delayed = prom.Gauge(
            "dramatiq_delayed_messages_inprogress",
            "Delayed messages held in memory.",
            _LABELS,
            multiprocess_mode="livesum",
            registry=None,
        )
        self.duration = prom.Histogram(
            "dramatiq_message_duration_milliseconds",
            "Time spent processing.",
            _LABELS,
            buckets=_DURATION_BUCKETS_MS,
            registry=None,
        )
        self.time_in_queue = prom.Histogram(
            "cybervpn_message_time_in_queue_seconds",
            "From enqueue (or the end of its delay) to the start of processing.",
            _LABELS,
            buckets=_QUEUE_BUCKETS_S,
            registry=None,
        )
        threading.Thread(target=self._flush_forever, name="metrics-flush", daemon=True).start()

    @property
    def forks(self) -> list[Any]:
        """The exposition process; none when METRICS_PORT=0."""
        return [serve_metrics] if self.port else []

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        from prometheus_client import multiprocess

        if self.multiproc_dir is not None:
            self._stop_flushing.set()
            self.flush()
            multiprocess.mark_process_dead(os.getpid(), str(self.multiproc_dir))  # type: ignore[no-untyped-call]

    def _series(self, queue_name: str, actor_name: str) -> _Series:
        """The labelled children of one (queue, actor), created once: ``labels()`` is not free."""
        key = (queue_name, actor_name)
        series = self._cache.get(key)
        if series is None:
            series = self._cache[key] = _Series(
                *(
                    m.labels(queue_name, actor_name)
                    for m in (self.total, self.errored, self.inprogress, self.duration, self.time_in_queue)
                )
            )
        return series

    def after_nack(self, broker: dramatiq.Broker, message: Any) -> None:
        if self.multiproc_dir is None:
            return
        self._release_delayed(message)
        self.dead.labels(q_name(message.queue_name), message.actor_name).inc()

    def after_ack(self, broker: dramatiq.Broker, message: Any) -> None:
        if self.multiproc_dir is not None:
            self._release_delayed(message)

    def _release_delayed(self, message: Any) -> None:
        # A delayed message leaves this process's memory when its .DQ delivery is settled.
        if message.queue_name.endswith(".DQ"):
            self.delayed.labels(q_name(message.queue_name), message.actor_name).dec()

    def after_enqueue(self, broker: dramatiq.Broker, message: Any, delay: int | None) -> None:
        if self.multiproc_dir is None:
            return
        if "retries" in message.options and delay:
            self.retried.labels(q_name(message.queue_name), message.actor_name).inc()

    def before_delay_message(self, broker: dramatiq.Broker, message: Any) -> None:
        if self.multiproc_dir is None:
            return
        self.delayed.labels(q_name(message.queue_name), message.actor_name).inc()

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        if self.multiproc_dir is None:
            return
        tally = self._tally(message.queue_name, message.actor_name)
        enqueued_at = message.options.get("enqueued_at")
        if isinstance(enqueued_at, int | float):
            tally.queue_time.observe(max(0.0, time.time() - enqueued_at / 1000))
        tally.inprogress += 1
        self._local.running = (tally, time.perf_counter())

    def after_process_message(
        self, broker: dramatiq.Broker, message: Any, *, result: Any = None, exception: Any = None
    ) -> None:
        running, self._local.running = getattr(self._local, "running", None), None
        if running is None:
            return  # before_process_message of this middleware never ran for it
        tally, started = running
        tally.duration.observe((time.perf_counter() - started) * 1000)
        tally.inprogress -= 1
        tally.total += 1
        if exception is not None:
            tally.errored += 1

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        self.after_process_message(broker, message)

    def _tally(self, queue_name: str, actor_name: str) -> _Tally:
        """This thread's tally of one (queue, actor); registered for the flusher when first made."""
        tallies: dict[tuple[str, str], _Tally] | None = getattr(self._local, "tallies", None)
        if tallies is None:
            tallies = self._local.tallies = {}
        key = (queue_name, actor_name)
        tally = tallies.get(key)
        if tally is None:
            tally = tallies[key] = _Tally()
            with self._flush_lock:
                self._tallies.append((key, tally, _Tally()))
        return tally

    def flush(self) -> None:
        """Add what every thread counted since the last flush to the prometheus-client values."""
        with self._flush_lock:
            inprogress: dict[tuple[str, str], int] = {}
            for key, tally, flushed in self._tallies:
                series = self._series(*key)
                _add(series.total.inc, tally, flushed, "total")
                _add(series.errored.inc, tally, flushed, "errored")
                _add_histogram(series.duration, tally.duration, flushed.duration)
                _add_histogram(series.time_in_queue, tally.queue_time, flushed.queue_time)
                inprogress[key] = inprogress.get(key, 0) + tally.inprogress
            for key, running in inprogress.items():
                self._series(*key).inprogress.set(running)

    def _flush_forever(self) -> None:
        while not self._stop_flushing.wait(FLUSH_INTERVAL_S):
            try:
                self.flush()
            except Exception:  # never let a metrics bug stop the flushing for good
                log.exception("cannot flush metrics")


class _Histogram:
    """Cumulative observations: their sum and how many fell in each bucket (not cumulative
    over buckets, like prometheus-client's own values)."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.sum = 0.0
        self.counts = [0] * len(bounds)

    def observe(self, amount: float) -> None:
        self.sum += amount
        self.counts[bisect_left(self.bounds, amount)] += 1


class _Tally:
    """What one worker thread counted for one (queue, actor), cumulatively. Only that thread
    writes it; the flusher reads it and keeps its own copy of what it has already added, so no
    increment is lost and no lock is taken per message."""

    __slots__ = ("duration", "errored", "inprogress", "queue_time", "total")

    def __init__(self) -> None:
        self.total = 0
        self.errored = 0
        self.inprogress = 0
        self.duration = _Histogram(_DURATION_BUCKETS_MS)
        self.queue_time = _Histogram(_QUEUE_BUCKETS_S)


def _add(inc: Any, tally: _Tally, flushed: _Tally, field: str) -> None:
    now = getattr(tally, field)
    delta = now - getattr(flushed, field)
    if delta:
        inc(delta)
        setattr(flushed, field, now)


def _add_histogram(child: Any, seen: _Histogram, flushed: _Histogram) -> None:
    """Add the observations since the last flush to a prometheus-client histogram child. Its
    ``_sum`` and ``_buckets`` values are what ``Histogram.observe`` increments; adding to them
    directly records many observations at once."""
    for i, count in enumerate(seen.counts):
        delta = count - flushed.counts[i]
        if delta:
            child._buckets[i].inc(delta)
            flushed.counts[i] = count
    total = seen.sum
    if total != flushed.sum:
        child._sum.inc(total - flushed.sum)
        flushed.sum = total


@dataclass(frozen=True)
class _Series:
    total: Any
    errored: Any
    inprogress: Any
    duration: Any
    time_in_queue: Any


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        import prometheus_client as prom
        from prometheus_client import multiprocess

        from worker_app.health import HEALTH_DIR, fleet_answer

        probed = fleet_answer(Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]) / HEALTH_DIR, self.path)
        if probed is not None:  # /healthz, /readyz: the worker processes' own snapshots
            status, answer = probed
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)
            return

        registry = prom.CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        registry.register(_queue_depths())
        body = prom.generate_latest(registry)
        self.send_response(200)
        self.send_header("Content-Type", prom.CONTENT_TYPE_LATEST)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug(format, *args)


@functools.cache
def _queue_depths() -> Any:
    """One queue-depth collector per exposition process (its cache spans scrapes)."""
    from worker_app.config import get_settings
    from worker_app.queues import QueueDepthCollector

    return QueueDepthCollector(get_settings())


def bind_free_port(port: int, bind: Callable[[int], _Server], what: str) -> _Server | None:
    """``bind(port)``; if that port is in use, the next free one of the ``PORTS_TRIED``; ``None``
    if none is free or binding fails otherwise. Never raises: a second ``dramatiq worker_app`` or
    scheduler on the same host must not die of its metrics port. One warning names the port
    asked for and the one used (or why there is none)."""
    last = min(port + PORTS_TRIED - 1, 65535)
    for candidate in range(port, last + 1):
        try:
            bound = bind(candidate)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                continue
            log.warning("%s not served: port %d: %s", what, candidate, e.strerror or e)
            return None
        if candidate != port:
            log.warning("%s port %d is in use: serving on port %d instead", what, port, candidate)
        return bound
    log.warning("%s not served: ports %d-%d are all in use", what, port, last)
    return None


def metrics_server(port: int) -> ThreadingHTTPServer | None:
    """The exposition server, bound to ``port`` or the next free port (see :func:`bind_free_port`)."""
    return bind_free_port(port, lambda p: ThreadingHTTPServer(("0.0.0.0", p), _Handler), "worker metrics")


def serve_metrics() -> int:
    """Fork process of ``dramatiq worker_app``: serve every worker process's metrics on METRICS_PORT
    (or the next free port); exits at once, after a warning, when none is free."""
    from worker_app.config import get_settings

    settings = get_settings()
    prepare_multiprocess_dir(settings.metrics_dir)
    server = metrics_server(settings.metrics_port)
    if server is None:
        return 0
    log.info("serving Prometheus metrics on :%d/metrics", server.server_address[1])
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        server.shutdown()
    return 0
