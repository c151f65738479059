"""Worker liveness: every worker process publishes a heartbeat to Redis; the dashboard lists them.

Each ``dramatiq worker_app`` process writes ``cybervpn:workers:<host>:<pid>`` (a hash: host, pid,
queues, threads, in_flight, processed, started_at, beat_at, memory_used, memory_limit,
memory_source, breakers — JSON, service → closed/half_open/open of the process's circuit
breakers; TTL ``WORKER_BEAT_TTL_S``) every ``WORKER_BEAT_EVERY_S`` seconds and keeps its name in
the sorted set ``cybervpn:workers`` scored by the last beat. A worker that stops beating drops out
after the TTL. Each beat also stamps the domain queues the process consumes in the sorted set
``cybervpn:queues:consumed`` (queue -> last beat): the scheduler does not fire a job whose queue no
worker has consumed for ``SCHEDULER_CONSUMER_GRACE_S``, and ``worker-app schedules`` flags it.

Each beat also adds the attempts the process finished since the last one to the fleet-wide
per-minute counts ``tasks`` (:mod:`worker_app.rolling`): ``<queue>:processed`` and
``<queue>:failed`` (the attempt raised; a rate-limited retry is flow control, not a failure). The
error-rate anomaly rule reads them.

Memory (:func:`memory_usage`): in a container with a memory limit (cgroup v2 or v1) the container's
working set against that limit — what the OOM killer judges; elsewhere the process's RSS against
``WORKER_MEMORY_LIMIT_MB``, or the machine's RAM when that is 0.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, cast

import dramatiq
import redis

from worker_app.clients.breaker import process_states
from worker_app.errors import RateLimited
from worker_app.ordered import domain_of
from worker_app.redis_client import key
from worker_app.rolling import RollingCounts

log = logging.getLogger(__name__)
WORKER_BEAT_EVERY_S = 5.0
WORKER_BEAT_TTL_S = 20
INDEX_KEY = key("workers")
#: Domain queue -> the last time a live worker consumed it (a sorted set; the scheduler reads it).
CONSUMED_KEY = key("queues", "consumed")


@dataclass(frozen=True)
class WorkerInfo:
    name: str
    host: str
    pid: int
    queues: list[str]
    threads: int
    in_flight: int
    processed: int
    started_at: float
    beat_at: float
    memory_used: int = 0
    memory_limit: int = 0
    memory_source: str = ""
    breakers: dict[str, str] | None = None
    """Service → this process's circuit breaker state (``None``: not reported)."""

    @property
    def memory_pct(self) -> float | None:
        return 100 * self.memory_used / self.memory_limit if self.memory_limit else None


def alive_workers(client: redis.Redis, now: float | None = None) -> list[WorkerInfo]:
    """Workers that beat within the TTL, by name."""
    now = time.time() if now is None else now
    names = [str(n) for n in client.zrangebyscore(INDEX_KEY, now - WORKER_BEAT_TTL_S, "+inf")]
    found = []
    for name in sorted(names):
        data: dict[str, Any] = {str(k): str(v) for k, v in dict(client.hgetall(key("workers", name))).items()}
        if not data:
            continue
        found.append(
            WorkerInfo(
                name=name, host=data.get("host", "?"), pid=int(data.get("pid", 0)),
                queues=[q for q in data.get("queues", "").split(",") if q],
                threads=int(data.get("threads", 0)),
                in_flight=int(data.get("in_flight", 0)), processed=int(data.get("processed", 0)),
                started_at=float(data.get("started_at", 0)), beat_at=float(data.get("beat_at", 0)),
                memory_used=int(data.get("memory_used", 0)), memory_limit=int(data.get("memory_limit", 0)),
                memory_source=data.get("memory_source", ""), breakers=_breakers(data.get("breakers")),
            )
        )  # fmt: skip
    return found


def _breakers(value: str | None) -> dict[str, str] | None:
    try:
        found = json.loads(value) if value else None
    except ValueError:
        return None
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else None


class WorkerHeartbeats(dramatiq.Middleware):
    """Publishes this worker process's heartbeat with its queues and in-flight count."""

    def __init__(self, client: redis.Redis, *, memory_limit_mb: int = 0) -> None:
        self.client = client
        self.memory_limit_mb = memory_limit_mb
        self.tasks = RollingCounts(client, "tasks")
        self._in_flight = 0
        self._processed = 0
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._worker: Any = None
        self._started_at = time.time()

    @property
    def name(self) -> str:
        """``host:pid`` of the worker process this middleware runs in (it is built before the fork)."""
        return f"{socket.gethostname()}:{os.getpid()}"

    def after_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        self._worker = worker
        threading.Thread(target=self._beat_forever, name="worker-heartbeat", daemon=True).start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        self._stop.set()
        with suppress(redis.RedisError):  # best effort: the entry expires after WORKER_BEAT_TTL_S anyway
            self.client.zrem(INDEX_KEY, self.name)
            self.client.delete(key("workers", self.name))

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        with self._lock:
            self._in_flight += 1

    def after_process_message(
        self, broker: dramatiq.Broker, message: Any, *, result: Any = None, exception: Any = None
    ) -> None:
        failed = exception is not None and not isinstance(exception, RateLimited)
        queue = message.queue_name
        with self._lock:
            self._in_flight = max(0, self._in_flight - 1)
            self._processed += 1
            self._counts[f"{queue}:processed"] = self._counts.get(f"{queue}:processed", 0) + 1
            if failed:
                self._counts[f"{queue}:failed"] = self._counts.get(f"{queue}:failed", 0) + 1

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        with self._lock:
            self._in_flight = max(0, self._in_flight - 1)
            self._processed += 1

    def _beat_forever(self) -> None:
        while not self._stop.is_set():
            try:
                self.beat()
            except redis.RedisError as e:
                log.debug("worker heartbeat not written: %s", e)
            except Exception:  # a bug here must not stop the beats for good (the worker would look dead)
                log.exception("worker heartbeat failed")
            self._stop.wait(WORKER_BEAT_EVERY_S)

    def beat(self) -> None:
        worker = self._worker
        queues = sorted(getattr(worker, "consumer_whitelist", None) or getattr(worker.broker, "queues", {}))
        now = time.time()
        with self._lock:
            in_flight, processed = self._in_flight, self._processed
            counts, self._counts = self._counts, {}
        try:
            self.tasks.add(counts, now)
        except redis.RedisError:
            with self._lock:  # counted again at the next beat, not lost
                for field, n in counts.items():
                    self._counts[field] = self._counts.get(field, 0) + n
            raise
        used, limit, source = memory_usage(self.memory_limit_mb)
        fields: dict[str, str | int | float] = {
            "host": socket.gethostname(), "pid": os.getpid(),
            "queues": ",".join(q for q in queues if not q.endswith((".DQ", ".XQ"))),
            "threads": int(getattr(worker, "worker_threads", 0)), "in_flight": in_flight,
            "processed": processed,
            "started_at": self._started_at, "beat_at": now,
            "memory_used": used, "memory_limit": limit, "memory_source": source,
            "breakers": json.dumps(process_states()),
        }  # fmt: skip
        with self.client.pipeline() as pipe:
            pipe.hset(key("workers", self.name), mapping=cast(Any, fields))
            pipe.expire(key("workers", self.name), WORKER_BEAT_TTL_S)
            pipe.zadd(INDEX_KEY, {self.name: now})
            pipe.zremrangebyscore(INDEX_KEY, "-inf", now - WORKER_BEAT_TTL_S)
            consumed = {domain_of(q) for q in queues if not q.endswith((".DQ", ".XQ"))}
            if consumed:
                pipe.zadd(CONSUMED_KEY, dict.fromkeys(consumed, now))
            pipe.execute()


def consumed_queues(client: redis.Redis, within_s: float, now: float | None = None) -> dict[str, float]:
    """Domain queues some worker consumed within the last ``within_s`` seconds, with when it last
    did (empty: no worker has beaten since Redis was last emptied, or none for that long)."""
    now = time.time() if now is None else now
    found = client.zrangebyscore(CONSUMED_KEY, now - within_s, "+inf", withscores=True)
    return {str(queue): float(at) for queue, at in cast(list[tuple[str, float]], found)}


def memory_usage(limit_mb: int = 0, cgroup_root: str = "/sys/fs/cgroup") -> tuple[int, int, str]:
    """``(used bytes, limit bytes, source)``: the cgroup's working set and limit when the cgroup has
    one (source ``cgroup``), else this process's RSS against ``limit_mb`` (``WORKER_MEMORY_LIMIT_MB``)
    or the machine's RAM (``machine``)."""
    cgroup = _cgroup_memory(cgroup_root)
    if cgroup is not None:
        return cgroup[0], cgroup[1], "cgroup"
    rss = _rss_bytes()
    if limit_mb:
        return rss, limit_mb * 1024 * 1024, "WORKER_MEMORY_LIMIT_MB"
    return rss, os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "machine"


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _cgroup_memory(root: str) -> tuple[int, int] | None:
    """(working set, limit) of this process's memory cgroup, if it has a limit."""
    for limit_file, usage_file, stat_file, inactive in (
        ("memory.max", "memory.current", "memory.stat", "inactive_file"),  # v2
        ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes", "memory/memory.stat",
         "total_inactive_file"),  # v1
    ):  # fmt: skip
        limit, usage = _read(f"{root}/{limit_file}"), _read(f"{root}/{usage_file}")
        if limit is None or usage is None or not limit.isdigit() or int(limit) >= 1 << 60:
            continue  # "max" (v2) or a huge number (v1): no limit
        cache = 0
        for line in (_read(f"{root}/{stat_file}") or "").splitlines():
            name, _, value = line.partition(" ")
            if name == inactive and value.isdigit():
                cache = int(value)
        return max(0, int(usage) - cache), int(limit)
    return None


def _rss_bytes() -> int:
    statm = _read("/proc/self/statm")
    if statm:
        return int(statm.split()[1]) * os.sysconf("SC_PAGE_SIZE")
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
