"""``python -m scheduler``: the APScheduler process that enqueues every periodic job.

Threads:

* the main thread runs APScheduler's ``BlockingScheduler`` (UTC) over the enabled jobs of
  :mod:`scheduler.table`; every replica ticks, only the leader fires;
* the elector polls the leader lock (:mod:`scheduler.leader`) every SCHEDULER_LEADER_POLL_S;
* the publisher is the only thread that talks to RabbitMQ and fires: it takes ticks from
  APScheduler's executor and the elector's requests one at a time, and between fires services the
  AMQP connection's heartbeats, so an idle publisher is never dropped by the broker.

On taking the lock the new leader publishes its effective table (``scheduler_jobs``), fires once each
job whose latest slot within its grace has not been fired (a fire lost to the failover; older missed
slots coalesce into that one), and — the first time this process leads — the ``immediate`` jobs.
"""

from __future__ import annotations

import logging
import queue
import signal
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any

import dramatiq
import psycopg
from apscheduler.executors.base import BaseExecutor
from apscheduler.schedulers.blocking import BlockingScheduler

from scheduler.consumers import ConsumedQueues
from scheduler.fire import FireResult, conninfo, fire, process_name, record_skip
from scheduler.leader import LeaderLock, NotLeader
from scheduler.metrics import SchedulerMetrics
from scheduler.table import FireTrigger, ScheduledJob, resolve_jobs
from worker_app.config import Settings
from worker_app.errors import ConfigurationError
from worker_app.health import Health
from worker_app.publishing import check_connection, pump_interval, service_idle

log = logging.getLogger("scheduler")

#: Seconds between retries of a publish that failed (RabbitMQ down), while the slot is in grace.
PUBLISH_RETRY_S = 2.0
PRUNE_INTERVAL_S = 3600.0
PRUNE_BATCH = 10_000

_UPSERT_JOB = """
    INSERT INTO scheduler_jobs
        (job, actor, queue, schedule, jitter_s, grace_s, immediate, enabled, disabled_reason,
         updated_at, updated_by)
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, now(), %s)
    ON CONFLICT (job) DO UPDATE SET
        actor = excluded.actor, queue = excluded.queue, schedule = excluded.schedule,
        jitter_s = excluded.jitter_s, grace_s = excluded.grace_s, immediate = excluded.immediate,
        enabled = excluded.enabled, disabled_reason = excluded.disabled_reason,
        updated_at = now(), updated_by = excluded.updated_by
"""
_PRUNE = """
    DELETE FROM scheduler_fires WHERE ctid = ANY (ARRAY(
        SELECT f.ctid FROM scheduler_fires f
        WHERE f.fired_at < now() - make_interval(days => %(days)s)
          AND f.scheduled_at < (SELECT max(g.scheduled_at) FROM scheduler_fires g WHERE g.job = f.job)
        LIMIT %(batch)s))
"""


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class _Tick:
    job: str
    run_time: datetime


@dataclass(frozen=True)
class _Task:
    name: str  # "elected" | "prune"


class _PublisherExecutor(BaseExecutor):  # type: ignore[misc]
    """Hands APScheduler's due runs to the publisher thread instead of running a function.

    One tick per job is in flight at a time. APScheduler's own rule for a job still running is to drop
    the run ("maximum number of running instances reached"); here the run is kept instead, as the
    job's one deferred tick (later runs coalesce into it), and handed over when the running tick is
    done. Without that, a process waking from a freeze while its last tick was mid-publish would
    drop the coalesced fire of everything it missed.
    """

    def __init__(self, service: SchedulerService) -> None:
        super().__init__()
        self.service = service
        self._deferred: dict[str, datetime] = {}

    def submit_job(self, job: Any, run_times: list[datetime]) -> None:
        with self._lock:
            if self._instances[job.id] >= job.max_instances:
                self._deferred[job.id] = run_times[-1]
                return
            super().submit_job(job, run_times)  # the lock is re-entrant

    def _do_submit_job(self, job: Any, run_times: list[datetime]) -> None:
        self.service.submit(_Tick(job.id, run_times[-1]))

    def done(self, job_id: str) -> None:
        with self._lock:
            deferred = self._deferred.pop(job_id, None)
            if deferred is not None:  # the instance stays counted: it passes to the deferred tick
                self.service.submit(_Tick(job_id, deferred))
                return
        self._run_job_success(job_id, [])


def _never_called() -> None:  # pragma: no cover - the publisher executor never calls job functions
    raise AssertionError("scheduler jobs are fired by the publisher thread")


class SchedulerService:
    """One scheduler process: leader or standby."""

    def __init__(
        self,
        settings: Settings,
        broker: dramatiq.Broker,
        jobs: list[ScheduledJob],
        *,
        lock: LeaderLock | None = None,
        metrics: SchedulerMetrics | None = None,
        consumers: ConsumedQueues | None = None,
    ) -> None:
        self.settings = settings
        self.consumers = consumers
        self.broker = broker
        self.all_jobs = jobs
        self.jobs = {job.name: job for job in jobs if job.enabled}
        self.triggers: dict[str, FireTrigger] = {name: job.trigger() for name, job in self.jobs.items()}
        self.fired_by = process_name()
        self.lock = lock or LeaderLock(
            conninfo(settings.database_url.get_secret_value()), settings.scheduler_lock_name, self.fired_by
        )
        self.metrics = metrics or SchedulerMetrics()
        self.health = Health()
        self.started_at = _utcnow()
        self.stopping = threading.Event()
        self.exit_code = 0
        self._inbox: queue.Queue[_Tick | _Task | None] = queue.Queue()
        self._led_before = False
        self._executor = _PublisherExecutor(self)
        self.scheduler = BlockingScheduler(timezone=UTC, executors={"default": self._executor})
        for name, trigger in self.triggers.items():
            self.scheduler.add_job(
                _never_called, trigger=trigger, id=name, name=name,
                coalesce=True, max_instances=1, misfire_grace_time=None,
            )  # fmt: skip

    # ---------------------------------------------------------------- lifecycle

    def run(self) -> int:
        """Run until :meth:`stop`; returns the exit code."""
        self._log_table()
        threads = [
            threading.Thread(target=self._publisher, name="scheduler-publisher", daemon=True),
            threading.Thread(target=self._elector, name="scheduler-elector", daemon=True),
        ]
        for thread in threads:
            thread.start()
        try:
            self.scheduler.start()
        finally:
            self.stopping.set()
            self._inbox.put(None)
            for thread in threads:
                thread.join(timeout=15)
            self.lock.release()
            self.metrics.leader.set(0)
            self.broker.close()
            log.info("scheduler stopped")
        return self.exit_code

    def stop(self, exit_code: int | None = None) -> None:
        """Stop ticking and firing (safe from a signal handler and from other threads)."""
        if exit_code is not None:
            self.exit_code = exit_code
        self.health.stopping = True
        self.stopping.set()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    def submit(self, item: _Tick | _Task) -> None:
        self._inbox.put(item)

    def _log_table(self) -> None:
        for job in self.all_jobs:
            if job.enabled:
                override = f" (from {job.overridden_by})" if job.overridden_by else ""
                log.info(
                    "job %s: %s%s -> %s on %s",
                    job.name,
                    self.triggers[job.name],
                    override,
                    job.actor,
                    job.queue,
                )
            else:
                log.info("job %s: disabled (%s)", job.name, job.disabled_reason)
        log.info(
            "scheduler %s: %d jobs enabled, %d disabled; waiting for the lock %r",
            self.fired_by, len(self.jobs), len(self.all_jobs) - len(self.jobs),
            self.settings.scheduler_lock_name,
        )  # fmt: skip

    # ---------------------------------------------------------------- elector

    def _elector(self) -> None:
        last_prune = 0.0
        unreachable = False
        while not self.stopping.is_set():
            was_leader = self.lock.is_leader
            leader = self.lock.poll()
            if self.lock.last_error and not unreachable:
                log.warning("cannot reach PostgreSQL for the lock (%s); retrying", self.lock.last_error)
            elif unreachable and not self.lock.last_error:
                log.info("PostgreSQL reachable again")
            unreachable = self.lock.last_error is not None
            self.health.beat("elector")
            self.health.report("postgresql", self.lock.last_error and f"leader lock: {self.lock.last_error}")
            self.metrics.leader.set(1 if leader else 0)
            if leader and not was_leader:
                log.info("became leader (%s): firing", self.fired_by)
                self.submit(_Task("elected"))
            elif was_leader and not leader:
                log.warning("no longer leader: firing stopped")
            if leader and time.monotonic() - last_prune > PRUNE_INTERVAL_S:
                last_prune = time.monotonic()
                self.submit(_Task("prune"))
            self.stopping.wait(self.settings.scheduler_leader_poll_s)

    # ---------------------------------------------------------------- publisher

    def _publisher(self) -> None:
        while True:
            # readiness, not liveness: a publish may block on a dead broker for a while (connect
            # timeouts), which is RabbitMQ being down, not this process hanging
            self.health.report("publisher", None)
            try:
                item = self._inbox.get(timeout=self._pump_interval())
            except queue.Empty:
                self._pump()
                continue
            if item is None:
                return
            try:
                if isinstance(item, _Tick):
                    self._tick(item)
                elif item.name == "elected":
                    self._elected()
                elif item.name == "prune":
                    self._prune()
            except Exception:
                log.exception("scheduler publisher: unexpected error")
            finally:
                if isinstance(item, _Tick):
                    self._executor.done(item.job)

    def _pump_interval(self) -> float:
        return pump_interval(self.broker)

    def _pump(self) -> None:
        """Service the idle publisher connection (heartbeats) so the broker never drops it; a leader
        keeps one open, so its readiness says whether it could fire now."""
        if not self.lock.is_leader:
            service_idle(self.broker)
            self.health.forget("rabbitmq")  # a standby publishes nothing
            return
        try:
            check_connection(self.broker)
            self.health.report("rabbitmq", None)
        except Exception as e:
            self.health.report("rabbitmq", f"cannot publish: {_one_line(e)}")

    def _tick(self, tick: _Tick) -> None:
        if not self.lock.is_leader or self.stopping.is_set():
            return
        job = self.jobs[tick.job]
        slot = self.triggers[tick.job].base_time(tick.run_time)
        late_s = (_utcnow() - tick.run_time).total_seconds()
        if late_s > job.grace_s:
            self._skip(job, slot, "missed", f"missed by {late_s:.1f} s (grace {job.grace_s} s)")
            return
        queue = job.queue or ""  # an enabled job's actor exists, so its queue is known
        if self.consumers is not None and self.consumers.unconsumed(queue):
            grace = f"{self.consumers.grace_s:.0f} s"
            self._skip(job, slot, "no_consumer", f"no worker consumed {queue} in the last {grace} "
                       f"(WORKER_QUEUES / ENABLE_{queue.upper()})")  # fmt: skip
            return
        self._fire(job, slot, "scheduled", deadline=tick.run_time + timedelta(seconds=job.grace_s))

    def _skip(self, job: ScheduledJob, slot: datetime, why: str, reason: str) -> None:
        """Record the slot skipped (counted under ``why``) without firing it."""
        try:
            with self.lock.connection() as conn:
                record_skip(conn, job.name, slot, kind="scheduled", reason=reason, fired_by=self.fired_by)
        except (NotLeader, psycopg.Error):
            return
        self.metrics.skipped(job.name, why)
        log.warning("skipped %s @ %s: %s", job.name, slot.isoformat(), reason)

    def _fire(self, job: ScheduledJob, slot: datetime, kind: str, *, deadline: datetime) -> FireResult | None:
        """Fire one slot, retrying a failed publish until ``deadline``; ``None`` if it could not."""
        actor = self.broker.get_actor(job.actor)
        while True:
            try:
                with self.lock.connection() as conn:
                    result = fire(
                        conn, actor, job.name, slot,
                        kind=kind, fired_by=self.fired_by,
                        pending_stale_s=self.settings.scheduler_pending_stale_s,
                    )  # fmt: skip
            except NotLeader:
                return None
            except psycopg.Error as e:
                self.metrics.skipped(job.name, "error")
                log.error("cannot fire %s @ %s: database: %s", job.name, slot.isoformat(), _one_line(e))
                if isinstance(e, psycopg.errors.UndefinedTable):
                    log.critical("the scheduler tables are missing: run `worker-app db upgrade`")
                    self.stop(exit_code=2)
                return None
            except Exception as e:
                if self.stopping.is_set() or _utcnow() >= deadline:
                    self.metrics.skipped(job.name, "error")
                    log.error(
                        "cannot fire %s @ %s: publish failed: %s; giving up", job.name, slot.isoformat(), e
                    )
                    return None
                log.warning("publishing %s @ %s failed (%s); retrying", job.name, slot.isoformat(), e)
                self.health.report("publisher", None)  # retrying on purpose is progress, not a hang
                self.health.report("rabbitmq", f"cannot publish: {_one_line(e)}")
                self.stopping.wait(PUBLISH_RETRY_S)
                continue
            self.health.report("rabbitmq", None)
            self._report(result)
            return result

    def _report(self, result: FireResult) -> None:
        at = result.scheduled_at.isoformat()
        if result.outcome == "enqueued":
            self.metrics.fired(result.job, result.kind)
            log.info(
                "fired %s @ %s (%s) on %s: message %s trace %s",
                result.job, at, result.kind, result.queue, result.message_id, result.trace_id,
                extra={"job": result.job, "scheduled_at": at, "kind": result.kind,
                       "message_id": result.message_id, "trace_id": result.trace_id},
            )  # fmt: skip
        elif result.outcome == "skipped":
            self.metrics.skipped(result.job, "pending")
            log.warning("skipped %s @ %s: %s", result.job, at, result.reason, extra={"job": result.job})
        else:
            self.metrics.skipped(result.job, "duplicate")
            log.info("%s @ %s was already fired; not enqueued again", result.job, at)

    # ---------------------------------------------------------------- on election

    def _elected(self) -> None:
        try:
            with self.lock.connection() as conn:
                self._publish_table(conn)
                last = dict(
                    conn.execute("SELECT job, max(scheduled_at) FROM scheduler_fires GROUP BY job").fetchall()
                )
        except NotLeader:
            return
        except psycopg.errors.UndefinedTable:
            log.critical("the scheduler tables are missing: run `worker-app db upgrade`")
            self.stop(exit_code=2)
            return
        except psycopg.Error as e:
            log.error("cannot publish the schedule table: %s", _one_line(e))
            return
        now = _utcnow()
        for job in self.jobs.values():
            if job.name in last:
                self._catch_up(job, last[job.name], now)
        if not self._led_before:
            self._led_before = True
            for job in self.jobs.values():
                if job.immediate:
                    self._fire(
                        job, self.started_at, "immediate", deadline=now + timedelta(seconds=job.grace_s)
                    )

    def _catch_up(self, job: ScheduledJob, last_slot: datetime, now: datetime) -> None:
        """Fire the latest slot within grace if it has not been fired (older misses coalesce into it)."""
        trigger = job.trigger()
        times = trigger.fire_times(now - timedelta(seconds=job.grace_s), now)
        if not times:
            return
        slot = trigger.base_time(times[-1])
        if slot > last_slot:
            self._fire(job, slot, "catch_up", deadline=times[-1] + timedelta(seconds=job.grace_s))

    def _publish_table(self, conn: psycopg.Connection[Any]) -> None:
        with conn.transaction():
            for job in self.all_jobs:
                conn.execute(
                    _UPSERT_JOB,
                    (job.name, job.actor, job.queue, job.schedule, job.jitter_s, job.grace_s, job.immediate,
                     job.enabled, job.disabled_reason, self.fired_by),
                )  # fmt: skip
            conn.execute(
                "DELETE FROM scheduler_jobs WHERE job <> ALL(%s)", ([job.name for job in self.all_jobs],)
            )

    def _prune(self) -> None:
        days = self.settings.scheduler_fire_retention_days
        total = 0
        while not self.stopping.is_set():
            try:
                with self.lock.connection() as conn:
                    deleted = conn.execute(_PRUNE, {"days": days, "batch": PRUNE_BATCH}).rowcount
            except (NotLeader, psycopg.Error):
                return
            total += deleted
            if deleted < PRUNE_BATCH:
                break
        if total:
            log.info("pruned %d scheduler_fires rows older than %d days", total, days)


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())[:300] or type(error).__name__


def main() -> int:
    """Entry point of ``python -m scheduler``."""
    import worker_app
    from worker_app.runtime import get_runtime

    settings = get_runtime().settings
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    try:
        jobs = resolve_jobs(settings, worker_app.broker.actors)
    except ConfigurationError as e:
        print(f"scheduler: {e}", file=sys.stderr)
        return 2
    consumers = ConsumedQueues(get_runtime().redis, settings.scheduler_consumer_grace_s)
    service = SchedulerService(settings, worker_app.broker, jobs, consumers=consumers)
    service.metrics.serve(settings.scheduler_metrics_port, service.health)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("scheduler: %s received, stopping", signal.Signals(signum).name)
        service.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return service.run()
