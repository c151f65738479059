"""Worker liveness: every worker process publishes a heartbeat to Redis; the dashboard lists them.

Each ``dramatiq worker_app`` process writes ``cybervpn:workers:<host>:<pid>`` (a hash: host, pid,
queues, threads, in_flight, processed, started_at, beat_at; TTL ``WORKER_BEAT_TTL_S``) every
``WORKER_BEAT_EVERY_S`` seconds and keeps its name in the sorted set ``cybervpn:workers`` scored by
the last beat. A worker that stops beating drops out after the TTL.
"""

from __future__ import annotations

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

from worker_app.redis_client import key

log = logging.getLogger(__name__)
WORKER_BEAT_EVERY_S = 5.0
WORKER_BEAT_TTL_S = 20
INDEX_KEY = key("workers")


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
            )
        )  # fmt: skip
    return found


class WorkerHeartbeats(dramatiq.Middleware):
    """Publishes this worker process's heartbeat with its queues and in-flight count."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._in_flight = 0
        self._processed = 0
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
        with self._lock:
            self._in_flight = max(0, self._in_flight - 1)
            self._processed += 1

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        self.after_process_message(broker, message)

    def _beat_forever(self) -> None:
        while not self._stop.is_set():
            try:
                self.beat()
            except redis.RedisError as e:
                log.debug("worker heartbeat not written: %s", e)
            self._stop.wait(WORKER_BEAT_EVERY_S)

    def beat(self) -> None:
        worker = self._worker
        queues = sorted(getattr(worker, "consumer_whitelist", None) or getattr(worker.broker, "queues", {}))
        now = time.time()
        with self._lock:
            in_flight, processed = self._in_flight, self._processed
        fields: dict[str, str | int | float] = {
            "host": socket.gethostname(), "pid": os.getpid(),
            "queues": ",".join(q for q in queues if not q.endswith((".DQ", ".XQ"))),
            "threads": int(getattr(worker, "worker_threads", 0)), "in_flight": in_flight,
            "processed": processed,
            "started_at": self._started_at, "beat_at": now,
        }  # fmt: skip
        with self.client.pipeline() as pipe:
            pipe.hset(key("workers", self.name), mapping=cast(Any, fields))
            pipe.expire(key("workers", self.name), WORKER_BEAT_TTL_S)
            pipe.zadd(INDEX_KEY, {self.name: now})
            pipe.zremrangebyscore(INDEX_KEY, "-inf", now - WORKER_BEAT_TTL_S)
            pipe.execute()
