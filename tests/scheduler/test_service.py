"""The scheduler service's firing rules, driven directly (real PostgreSQL and RabbitMQ)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

import worker_app
from scheduler.service import SchedulerService, _Tick
from scheduler.table import resolve_jobs
from tests.fixtures.scheduler import purge, ready_count
from worker_app.config import load_settings

JOB = "scheduler_canary"


@pytest.fixture
def service(scheduler_tables: str) -> Iterator[SchedulerService]:
    import os

    env = {**os.environ, "SCHEDULE_SCHEDULER_CANARY": "every 10s", "SCHEDULE_SCHEDULER_CANARY_GRACE_S": "15",
           "SCHEDULE_SCHEDULER_CANARY_IMMEDIATE": "0",
           # the canary is the monitoring job these tests watch: no other fires there on election
           "SCHEDULE_CHECK_EXTERNAL_SERVICES_IMMEDIATE": "0",
           "SCHEDULER_LOCK_NAME": f"test-{uuid.uuid4().hex[:8]}"}  # fmt: skip
    settings = load_settings(env)
    jobs = resolve_jobs(settings, worker_app.broker.actors)
    svc = SchedulerService(settings, worker_app.broker, jobs)
    worker_app.broker.declare_queue("monitoring", ensure=True)
    purge("monitoring")
    assert svc.lock.poll(), "the test service leads"
    yield svc
    svc.lock.release()


def slot_now(seconds_ago: float) -> datetime:
    now = datetime.now(UTC) - timedelta(seconds=seconds_ago)
    return now.replace(second=now.second - now.second % 10, microsecond=0)


def fires(pg: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return pg.execute(
        "SELECT scheduled_at, kind, status, reason FROM scheduler_fires ORDER BY scheduled_at"
    ).fetchall()


def test_a_tick_within_grace_fires_and_a_later_one_is_recorded_missed(
    service: SchedulerService, pg: psycopg.Connection[Any]
) -> None:
    on_time = datetime.now(UTC).replace(microsecond=0)
    service._tick(_Tick(JOB, on_time))
    late = on_time - timedelta(seconds=60)
    service._tick(_Tick(JOB, late))
    rows = fires(pg)
    assert [(r[0], r[2]) for r in rows] == [(late, "skipped"), (on_time, "enqueued")]
    assert rows[0][3].startswith("missed by 6") and rows[0][3].endswith("(grace 15 s)")
    assert ready_count("monitoring") == 1


def test_a_new_leader_fires_the_last_missed_slot_once_and_only_if_the_job_ran_before(
    service: SchedulerService, pg: psycopg.Connection[Any]
) -> None:
    service._elected()
    assert fires(pg) == [], "a job with no history is not caught up on a fresh install"
    earlier = slot_now(30)
    pg.execute(
        "INSERT INTO scheduler_fires (job, scheduled_at, status, started_at)"
        " VALUES (%s, %s, 'started', now())",
        (JOB, earlier),
    )
    service._elected()
    service._elected()  # a second election does not fire the slot again
    rows = fires(pg)
    assert [(r[1], r[2]) for r in rows] == [("scheduled", "started"), ("catch_up", "enqueued")]
    assert rows[1][0] > earlier
    assert ready_count("monitoring") == 1
    published = dict(pg.execute("SELECT job, schedule FROM scheduler_jobs").fetchall())
    assert published[JOB] == "every 10s" and "check_anomalies" in published


def test_a_standby_tick_fires_nothing(service: SchedulerService, pg: psycopg.Connection[Any]) -> None:
    service.lock.release()
    service._tick(_Tick(JOB, slot_now(0)))
    assert fires(pg) == []


def test_a_run_due_while_its_tick_is_in_flight_is_deferred_not_dropped(service: SchedulerService) -> None:
    """APScheduler drops a run whose job is still "running"; ours keeps the latest such run and hands it
    to the publisher when the tick in flight is done (a process waking from a freeze mid-publish)."""
    from types import SimpleNamespace

    executor = service._executor
    executor.start(service.scheduler, "default")
    job = SimpleNamespace(id=JOB, max_instances=1)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    inbox = service._inbox

    executor.submit_job(job, [t0])
    executor.submit_job(job, [t0 + timedelta(seconds=1)])
    executor.submit_job(job, [t0 + timedelta(seconds=2), t0 + timedelta(seconds=3)])
    assert inbox.get_nowait() == _Tick(JOB, t0)
    assert inbox.empty(), "one tick per job in flight"

    executor.done(JOB)
    assert inbox.get_nowait() == _Tick(JOB, t0 + timedelta(seconds=3)), "the latest missed run, coalesced"
    assert executor._instances[JOB] == 1
    executor.done(JOB)
    assert JOB not in executor._instances and inbox.empty()


def test_a_job_whose_queue_no_worker_consumes_is_recorded_skipped_not_fired(
    service: SchedulerService, pg: psycopg.Connection[Any], redis_client: Any
) -> None:
    import time

    from scheduler.consumers import ConsumedQueues
    from worker_app.workers import CONSUMED_KEY

    service.consumers = ConsumedQueues(redis_client, grace_s=3600)
    first = datetime.now(UTC).replace(microsecond=0)
    service._tick(_Tick(JOB, first))  # nothing known yet (no worker has beaten): it fires
    redis_client.zadd(CONSUMED_KEY, {"payments": time.time(), "monitoring": time.time() - 7200})
    service.consumers = ConsumedQueues(redis_client, grace_s=3600)  # a fresh look, past its cache
    second = first + timedelta(seconds=1)
    service._tick(_Tick(JOB, second))  # workers are known, none consumed monitoring for an hour
    rows = fires(pg)
    assert [(r[0], r[2]) for r in rows] == [(first, "enqueued"), (second, "skipped")]
    assert rows[1][3].startswith("no worker consumed monitoring in the last 3600 s")
    assert ready_count("monitoring") == 1

    redis_client.zadd(CONSUMED_KEY, {"monitoring": time.time()})  # a monitoring worker is back
    service.consumers = ConsumedQueues(redis_client, grace_s=3600)
    pg.execute("UPDATE scheduler_fires SET status = 'started', started_at = now() WHERE status = 'enqueued'")
    third = second + timedelta(seconds=1)
    service._tick(_Tick(JOB, third))
    assert fires(pg)[-1][:3] == (third, "scheduled", "enqueued")
