"""Paused queues: an operator stops the workers taking new messages from a queue, without stopping
a worker or touching RabbitMQ (Sidekiq Enterprise's queue pausing, Celery's ``cancel_consumer``).

* ``worker-app queues pause Q`` / ``resume Q`` (also ``POST /api/v1/queues/<Q>/pause|resume`` and
  the dashboard's Queues page) write a row of ``queue_pauses``; the pause is in PostgreSQL, so it
  outlives any worker and Redis.
* Every worker process reads the table every ``QUEUE_PAUSE_POLL_S`` (:class:`PauseWatcher`), and each
  consumer of a paused queue — the domain queue, its delay queue, an ordered domain's shards — cancels
  its subscription (``basic.cancel``) at its next turn: within about two polls. Deliveries the
  consumer had prefetched but not handed to a worker thread go back to the queue once, at their
  place; messages already running finish and are acknowledged on the still-open channel. Nothing is
  requeued in a loop: the consumer is simply not subscribed while the pause lasts, and its
  connection stays open (heartbeats). Producers still publish, so the queue's depth grows.
* Resumed, each consumer subscribes again at its next turn.
* A worker started while its queue is paused reads the table before it consumes (PostgreSQL down at
  that moment: it consumes, and the next successful read pauses it).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text

from worker_app.db import Database
from worker_app.ordered import domain_of
from worker_app.policies import DOMAINS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pause:
    queue: str
    paused_at: datetime
    paused_by: str
    reason: str | None

    def as_dict(self) -> dict[str, object]:
        return {"queue": self.queue, "paused_at": self.paused_at.isoformat(), "paused_by": self.paused_by,
                "reason": self.reason}  # fmt: skip


class NotADomainQueue(ValueError):
    """A pause names a domain queue (its delay queue and shards follow it); this is not one."""


def domain_queue(queue: str) -> str:
    """``queue`` if it is a domain queue, else :class:`NotADomainQueue` naming the domains."""
    if queue not in DOMAINS:
        raise NotADomainQueue(f"{queue[:64]!r} is not a domain queue (one of: {', '.join(DOMAINS)})")
    return queue


def pause(database: Database, queue: str, *, by: str, reason: str | None = None) -> bool:
    """Pause ``queue``; ``False`` when it was paused already (the first pause is kept).
    :class:`NotADomainQueue` when it is not a domain queue."""
    domain_queue(queue)
    with database.transaction() as s:
        inserted = s.execute(
            text(
                "INSERT INTO queue_pauses (queue, paused_by, reason) VALUES (:q, :by, :reason) "
                "ON CONFLICT (queue) DO NOTHING RETURNING queue"
            ),
            {"q": queue, "by": by, "reason": reason},
        ).scalar()
    if inserted:
        log.warning("queue %s paused by %s%s", queue, by, f": {reason}" if reason else "",
                    extra={"event": "queue_paused", "queue": queue, "by": by})  # fmt: skip
    return bool(inserted)


def resume(database: Database, queue: str, *, by: str) -> bool:
    """Resume ``queue``; ``False`` when it was not paused. :class:`NotADomainQueue` when it is not a
    domain queue."""
    domain_queue(queue)
    with database.transaction() as s:
        deleted = s.execute(
            text("DELETE FROM queue_pauses WHERE queue = :q RETURNING queue"), {"q": queue}
        ).scalar()
    if deleted:
        log.warning(
            "queue %s resumed by %s", queue, by, extra={"event": "queue_resumed", "queue": queue, "by": by}
        )
    return bool(deleted)


def paused_queues(database: Database) -> dict[str, Pause]:
    """Every paused queue, by name."""
    with database.new_session() as s:
        rows = s.execute(text("SELECT queue, paused_at, paused_by, reason FROM queue_pauses ORDER BY queue"))
        return {r.queue: Pause(r.queue, r.paused_at, r.paused_by, r.reason) for r in rows}


class PauseWatcher:
    """This process's view of the paused queues, refreshed every ``poll_s`` by a daemon thread."""

    def __init__(self, database: Database, poll_s: float) -> None:
        self.database = database
        self.poll_s = poll_s
        self._paused: frozenset[str] = frozenset()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    def is_paused(self, queue_name: str) -> bool:
        """Whether the domain of ``queue_name`` (a queue, its ``.DQ``, a shard) is paused."""
        paused = self._paused
        return bool(paused) and domain_of(queue_name) in paused

    def refresh(self) -> None:
        """Read the table now; on an error keep the last view (logged once per outage)."""
        try:
            found = frozenset(paused_queues(self.database))
        except Exception as e:
            if not self._failing:
                log.warning("paused queues unreadable (%s: %s); keeping the last known: %s",
                            type(e).__name__, e, sorted(self._paused) or "none")  # fmt: skip
            self._failing = True
            return
        self._failing = False
        if found != self._paused:
            log.info("paused queues: %s", sorted(found) or "none", extra={"paused": sorted(found)})
        self._paused = found

    def start(self) -> PauseWatcher:
        """Read once now, then keep reading in the background."""
        self.refresh()
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="pause-watcher", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.refresh()
