"""A bulk operation's live progress, for the admin SPA and the dashboard.

* ``cybervpn:bulk:{job_id}:progress`` — JSON ``{"processed", "total", "failed", "errors"}`` (a
  contract with the admin SPA: exact names), written after every batch and kept
  :data:`PROGRESS_TTL_S` (7 days). ``errors`` lists ``{"user_id", "error"}``: the ids refused as
  malformed first, then each user that failed (the first :data:`ERRORS_KEPT`; the job's result has
  them all). ``total`` counts the valid distinct ids, so ``processed == total`` when it is over.
* a ``bulk_progress`` event on ``cybervpn:events`` (:mod:`worker_app.events`) with the same counts,
  the job id and ``status`` (``running``, then ``completed`` | ``cancelled`` | ``stopped``), for SSE.

Redis down: the job goes on (one warning, through :class:`~worker_app.redis_fallback.RedisFallback`);
every write carries the whole state, so the first one after Redis returns puts the key right. The
last write waits up to :data:`FINAL_WAIT_S` for Redis before giving up (the job row keeps the result).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis

from worker_app import events
from worker_app.redis_client import key
from worker_app.redis_fallback import RETRY_REDIS_S, RedisFallback

log = logging.getLogger("actors.bulk")

PROGRESS_TTL_S = 7 * 24 * 3600
ERRORS_KEPT = 1000
FINAL_WAIT_S = 30.0
EVENT_TYPE = "bulk_progress"


def progress_key(job_id: str) -> str:
    """``cybervpn:bulk:{job_id}:progress``."""
    return key("bulk", job_id, "progress")


@dataclass
class Progress:
    """Counts so far; ``errors`` as ``{"user_id", "error"}``."""

    total: int
    processed: int = 0
    failed: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)

    def add(self, users: int, failed: list[dict[str, Any]]) -> None:
        """A batch of ``users`` is over, ``failed`` of them failed."""
        self.processed += users
        self.failed += len(failed)
        self.errors.extend(failed)

    def as_json(self) -> dict[str, Any]:
        """The contract's JSON."""
        return {"processed": self.processed, "total": self.total, "failed": self.failed,
                "errors": self.errors[:ERRORS_KEPT]}  # fmt: skip


class ProgressWriter:
    """Writes progress to Redis (key and event) without ever failing the job."""

    def __init__(self, client: redis.Redis, *, sleep: Callable[[float], None] = time.sleep,
                 retry_s: float = RETRY_REDIS_S) -> None:  # fmt: skip
        self.client = client
        self.sleep = sleep
        self.fallback = RedisFallback(
            "bulk progress", "progress kept in the job, written when Redis answers", retry_s=retry_s
        )

    def write(self, job_id: str, progress: Progress, status: str, *, final: bool = False) -> bool:
        """Write it; whether Redis took it. ``final`` waits for Redis up to FINAL_WAIT_S."""
        if self.fallback.run(lambda: self._write(job_id, progress, status), lambda: False):
            return True
        if not final:
            return False
        deadline = time.monotonic() + FINAL_WAIT_S
        while time.monotonic() < deadline:
            self.sleep(1.0)
            try:
                return self._write(job_id, progress, status)
            except redis.RedisError:
                continue
        log.error("bulk job %s: final progress not written to Redis (down for %.0f s); the job's "
                  "result holds it", job_id, FINAL_WAIT_S)  # fmt: skip
        return False

    def _write(self, job_id: str, progress: Progress, status: str) -> bool:
        counts = {"processed": progress.processed, "total": progress.total, "failed": progress.failed}
        event = events.new_event(EVENT_TYPE, time.time(), job_id=job_id, status=status, **counts)
        pipe = self.client.pipeline(transaction=False)
        body = json.dumps(progress.as_json(), separators=(",", ":"))
        pipe.set(progress_key(job_id), body, ex=PROGRESS_TTL_S)
        events.publish(pipe, [event])
        pipe.execute()
        return True
