"""Fleet-wide per-actor telemetry (:mod:`worker_app.telemetry`): attempts started, completed, retried
and failed, and their durations, counted in memory and written to Redis by a thread of its own.

It must come *before* ``PolicyRetries`` in the middleware list: after-hooks run in reverse order, so
by the time this one runs the retry middleware has decided the message's outcome
(:mod:`worker_app.outcome`): ``success`` → completed, ``retry`` → retried, ``dead`` → failed,
``skipped`` → not counted (its ``started`` is taken back). A message skipped by a later middleware's
``before_process_message`` is taken back the same way — unless it was failed (a guard rejected it:
dead-lettered without running), which counts as failed.

Per message: two clock reads, two histogram buckets (bisect: its duration, and how long it waited in
the queue) and a few increments of this thread's own
tallies — no lock (one only when a thread first counts an actor in a minute) and no Redis call, as
in :mod:`~worker_app.middleware.metrics`. Telemetry never fails a message: Redis errors stay in the
flush thread.
"""

from __future__ import annotations

import logging
import threading
import time
from bisect import bisect_left
from typing import Any

import dramatiq
import redis

from worker_app import outcome
from worker_app.telemetry import DURATION_BOUNDS_MS, FLUSH_INTERVAL_S, MAX_PENDING_MINUTES, Counts, write

log = logging.getLogger(__name__)
_KINDS = {outcome.SUCCESS: "completed", outcome.RETRY: "retried", outcome.DEAD: "failed"}
TALLY_MINUTES = 2
"""A thread's tally of a minute is forgotten once it is this many minutes old (and flushed)."""

Key = tuple[int, str]  # (unix minute, actor)


class _Tally:
    """What one worker thread counted for one (minute, actor), cumulatively. Only that thread writes
    it; the flusher reads it and keeps a copy of what it has taken, so no lock is needed per message
    and no increment is lost."""

    __slots__ = ("completed", "durations", "failed", "retried", "started", "waits")

    def __init__(self) -> None:
        self.started = self.completed = self.failed = self.retried = 0
        self.durations = [0] * (len(DURATION_BOUNDS_MS) + 1)
        self.waits = [0] * (len(DURATION_BOUNDS_MS) + 1)

    def take(self, taken: _Tally) -> Counts | None:
        """What was counted since ``taken`` (which is then brought up to date); ``None`` if nothing.
        Each value is read once: its thread may be adding to it meanwhile."""
        started, completed, failed, retried = self.started, self.completed, self.failed, self.retried
        found = Counts(started - taken.started, completed - taken.completed, failed - taken.failed,
                       retried - taken.retried)  # fmt: skip
        taken.started, taken.completed, taken.failed, taken.retried = started, completed, failed, retried
        for mine, theirs, into in ((self.durations, taken.durations, found.durations),
                                   (self.waits, taken.waits, found.waits)):  # fmt: skip
            for bucket, (count, before) in enumerate(zip(mine, theirs, strict=True)):
                if count != before:
                    into[bucket] = count - before
                    theirs[bucket] = count
        return None if found.is_empty() else found


class Aggregator:
    """One process's counts per (unix minute, actor) until they are written to Redis.

    Each worker thread counts in tallies of its own; :meth:`flush` gathers what they counted since
    the last flush (under the lock), writes it in one transaction, and keeps it when Redis fails —
    the newest ``max_pending_minutes`` minutes of it; older ones are dropped, logged and counted in
    ``dropped_events``.
    """

    def __init__(self, client: redis.Redis, *, max_pending_minutes: int = MAX_PENDING_MINUTES) -> None:
        self.redis = client
        self.max_pending_minutes = max_pending_minutes
        self.dropped_events = 0
        self._local = threading.local()  # this thread's tallies by key
        self._lock = threading.Lock()  # the tallies' registry and the pending counts
        self._tallies: list[tuple[Key, _Tally, _Tally]] = []  # (key, tally, what the flusher took)
        self._pending: dict[Key, Counts] = {}
        self.last_errors: dict[str, tuple[float, str]] = {}
        """Actor → (unix s, error) of its last attempt that raised, until flushed."""
        self._failing = False

    def tally(self, key: Key) -> _Tally:
        """This thread's tally of ``key``, made (and registered for the flusher) on first use."""
        tallies: dict[Key, _Tally] | None = getattr(self._local, "tallies", None)
        if tallies is None:
            tallies = self._local.tallies = {}
        found = tallies.get(key)
        if found is None:
            for old in [k for k in tallies if k[0] < key[0] - TALLY_MINUTES]:
                del tallies[old]
            found = tallies[key] = _Tally()
            with self._lock:
                self._tallies.append((key, found, _Tally()))
        return found

    def started(self, key: Key, n: int = 1) -> None:
        """``n`` attempts began (``-1`` takes back one that was skipped after all)."""
        self.tally(key).started += n

    def ended(self, key: Key, kind: str, bucket: int | None) -> None:
        """An attempt ended as ``kind`` (``completed``, ``retried``, ``failed``) after a duration in
        histogram ``bucket`` (``None``: it never ran)."""
        tally = self.tally(key)
        if kind == "completed":
            tally.completed += 1
        elif kind == "retried":
            tally.retried += 1
        else:
            tally.failed += 1
        if bucket is not None:
            tally.durations[bucket] += 1

    def failed_with(self, actor: str, at: float, error: str) -> None:
        """Remember ``actor``'s latest error (under the lock: the flusher swaps the dict; a failure is
        rare enough to take it)."""
        with self._lock:
            self.last_errors[actor] = (at, error)

    def _gather(self) -> None:
        """Under the lock: add what every thread counted since the last time to the pending counts;
        forget the tallies of minutes over (their threads no longer write them)."""
        oldest_kept = int(time.time() // 60) - TALLY_MINUTES
        kept = []
        for key, tally, taken in self._tallies:
            found = tally.take(taken)
            if found is not None:
                self._pending.setdefault(key, Counts()).add(found)
            if key[0] >= oldest_kept:
                kept.append((key, tally, taken))
        self._tallies = kept

    def pending(self) -> dict[Key, Counts]:
        """What has been counted and not yet written to Redis."""
        with self._lock:
            self._gather()
            return {k: Counts(c.started, c.completed, c.failed, c.retried, dict(c.durations), dict(c.waits))
                    for k, c in self._pending.items()}  # fmt: skip

    def flush(self) -> bool:
        """Write everything counted since the last flush to Redis. False when Redis failed: the
        counts are kept for the next flush."""
        with self._lock:
            self._gather()
            taken, self._pending = self._pending, {}
            errors, self.last_errors = self.last_errors, {}
        if not taken and not errors:
            return True
        try:
            write(self.redis, taken, errors)
        except redis.RedisError as e:
            with self._lock:  # a newer error of the same actor, recorded meanwhile, wins
                self.last_errors = {**errors, **self.last_errors}
            self._keep(taken, e)
            return False
        if self._failing:
            self._failing = False
            log.info("telemetry written to Redis again")
        return True

    def _keep(self, taken: dict[Key, Counts], error: redis.RedisError) -> None:
        if not self._failing:
            self._failing = True
            log.warning("telemetry not written to Redis (%s): kept in memory for the next flush", error)
        with self._lock:
            for key, counts in taken.items():
                self._pending.setdefault(key, Counts()).add(counts)
            minutes = sorted({minute for minute, _ in self._pending})
            too_old = set(minutes[: max(0, len(minutes) - self.max_pending_minutes)])
            events = sum(self._pending.pop(k).events() for k in [k for k in self._pending if k[0] in too_old])
        if too_old:
            self.dropped_events += events
            log.warning(
                "telemetry: Redis down too long: dropped %d minute(s) holding %d event(s) (%d in all)",
                len(too_old), events, self.dropped_events,
            )  # fmt: skip


class Telemetry(dramatiq.Middleware):
    """Counts every actor's attempts by outcome and duration; flushes them to Redis every
    ``flush_interval_s`` and at worker shutdown (and on :meth:`flush`)."""

    def __init__(self, client: redis.Redis, *, flush_interval_s: float = FLUSH_INTERVAL_S) -> None:
        self.aggregator = Aggregator(client)
        self.flush_interval_s = flush_interval_s
        self._local = threading.local()  # (perf_counter, unix time, key) of this thread's message
        self._stop = threading.Event()

    def after_process_boot(self, broker: dramatiq.Broker) -> None:
        """Start the flush thread (worker processes only: nobody else emits ``process_boot``)."""
        threading.Thread(target=self._flush_forever, name="telemetry-flush", daemon=True).start()

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        """Stop the flush thread and write what the last messages counted."""
        self._stop.set()
        self.flush()

    def flush(self) -> bool:
        """Write the counts to Redis now; False if Redis failed (they are kept for the next flush)."""
        return self.aggregator.flush()

    def _flush_forever(self) -> None:
        while not self._stop.wait(self.flush_interval_s):
            try:
                self.flush()
            except Exception:  # a bug here must not end the flushing for good
                log.exception("cannot flush telemetry")

    def before_delay_message(self, broker: dramatiq.Broker, message: Any) -> None:
        """Keep when a delayed message (a retry, a ``send_with_options(delay=)``) falls due as option
        ``due_at``: dramatiq deletes ``eta`` when it moves the message to its queue, and without it
        the message's wait would count its whole delay."""
        eta = message.options.get("eta")
        if isinstance(eta, (int, float)):
            message.options["due_at"] = eta

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        now = time.time()
        key = (int(now // 60), message.actor_name)
        self._local.running = (time.perf_counter(), now, key)
        self.aggregator.tally(key).started += 1

    def after_process_message(
        self, broker: dramatiq.Broker, message: Any, *, result: Any = None, exception: Any = None
    ) -> None:
        running, self._local.running = getattr(self._local, "running", None), None
        if running is None:
            return  # this middleware's before_process_message did not run for it
        started, at, key = running
        elapsed_s = time.perf_counter() - started
        decided = outcome.get_outcome()
        if decided == outcome.SKIPPED:
            self.aggregator.tally(key).started -= 1
            return
        if exception is not None:  # on failures only
            self.aggregator.failed_with(key[1], at, f"{type(exception).__name__}: {exception}")
        kind = _KINDS.get(decided) if decided else _undecided(message, exception)
        end = int((at + elapsed_s) // 60)
        tally = self.aggregator.tally(key if end == key[0] else (end, key[1]))
        if kind == "completed":  # Aggregator.ended's body, one call less on every message
            tally.completed += 1
        elif kind == "retried":
            tally.retried += 1
        else:
            tally.failed += 1
        tally.durations[bisect_left(DURATION_BOUNDS_MS, elapsed_s * 1000)] += 1
        options = message.options
        queued_ms = max(message.message_timestamp, options.get("due_at") or 0, options.get("eta") or 0)
        tally.waits[bisect_left(DURATION_BOUNDS_MS, max(0.0, at * 1000 - queued_ms))] += 1

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        running, self._local.running = getattr(self._local, "running", None), None
        if running is not None:
            self.aggregator.started(running[2], -1)
        if message.failed:  # rejected by a guard: dead-lettered without running
            self.aggregator.ended((int(time.time() // 60), message.actor_name), "failed", None)


def _undecided(message: Any, exception: BaseException | None) -> str:
    """The outcome when no retry middleware set one (a stack without ``PolicyRetries``)."""
    if exception is None:
        return "completed"
    return "failed" if message.failed else "retried"
