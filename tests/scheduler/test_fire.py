"""The fire path against real PostgreSQL and RabbitMQ: one message per slot, no pile-up, and the
worker-side claim that drops a duplicate before it does work."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import dramatiq
import psycopg
import pytest
from dramatiq.brokers.stub import StubBroker

import worker_app
from scheduler.fire import fire
from tests.fixtures.scheduler import purge, ready_count
from tests.fixtures.stub import run_until_idle
from worker_app.middleware.scheduled import claim_fire
from worker_app.runtime import get_runtime
from worker_app.schedule_canary import canary_key

JOB = "scheduler_canary"
SLOT = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


@pytest.fixture
def canary(pg: psycopg.Connection[Any]) -> dramatiq.Actor[..., Any]:
    worker_app.broker.declare_queue("monitoring", ensure=True)
    purge("monitoring")
    return worker_app.broker.get_actor(JOB)


def fire_at(conn: psycopg.Connection[Any], actor: Any, slot: datetime, stale_s: int = 3600) -> Any:
    return fire(conn, actor, JOB, slot, kind="scheduled", fired_by="test", pending_stale_s=stale_s)


def row(conn: psycopg.Connection[Any], slot: datetime) -> dict[str, Any]:
    cur = conn.execute("SELECT * FROM scheduler_fires WHERE job = %s AND scheduled_at = %s", (JOB, slot))
    names = [c.name for c in cur.description or []]
    found = cur.fetchone()
    assert found is not None
    return dict(zip(names, found, strict=True))


def test_a_slot_is_enqueued_once_however_often_it_is_fired(pg: Any, canary: Any) -> None:
    first = fire_at(pg, canary, SLOT)
    again = fire_at(pg, canary, SLOT)
    assert first.outcome == "enqueued" and first.message_id and first.trace_id
    assert again.outcome == "duplicate"
    assert ready_count("monitoring") == 1
    recorded = row(pg, SLOT)
    assert (recorded["status"], recorded["message_id"], recorded["trace_id"]) == (
        "enqueued", first.message_id, first.trace_id,
    )  # fmt: skip


def test_a_job_whose_last_message_has_not_started_is_skipped_not_piled_up(pg: Any, canary: Any) -> None:
    first = fire_at(pg, canary, SLOT)
    second = fire_at(pg, canary, SLOT + timedelta(seconds=2))
    assert second.outcome == "skipped"
    assert first.message_id in (second.reason or "")
    assert row(pg, SLOT + timedelta(seconds=2))["status"] == "skipped"
    assert ready_count("monitoring") == 1

    assert claim_fire(get_runtime().database, JOB, SLOT, "scheduled", first.message_id)  # a worker starts it
    third = fire_at(pg, canary, SLOT + timedelta(seconds=4))
    assert third.outcome == "enqueued"
    assert ready_count("monitoring") == 2


def test_a_pending_fire_older_than_the_stale_bound_no_longer_blocks(pg: Any, canary: Any) -> None:
    fire_at(pg, canary, SLOT)
    pg.execute("UPDATE scheduler_fires SET fired_at = now() - interval '2 hours'")
    assert fire_at(pg, canary, SLOT + timedelta(minutes=1), stale_s=3600).outcome == "enqueued"


def test_a_failed_publish_leaves_no_row(pg: Any, canary: Any) -> None:
    class Down(Exception):
        pass

    class BrokenBroker:
        def enqueue(self, message: Any) -> Any:
            raise Down("RabbitMQ is down")

    class Actor:
        broker = BrokenBroker()
        queue_name = "monitoring"

        def message_with_options(self, **options: Any) -> Any:
            return canary.message_with_options(**options)

    with pytest.raises(Down):
        fire(pg, Actor(), JOB, SLOT, kind="scheduled", fired_by="test", pending_stale_s=60)  # type: ignore[arg-type]
    assert pg.execute("SELECT count(*) FROM scheduler_fires").fetchone() == (0,)
    assert fire_at(pg, canary, SLOT).outcome == "enqueued"


def test_the_claim_admits_one_message_per_slot_and_its_redeliveries(pg: Any) -> None:
    database = get_runtime().database
    assert claim_fire(database, JOB, SLOT, "scheduled", "message-a")
    assert claim_fire(database, JOB, SLOT, "scheduled", "message-a"), "a redelivery of the same message runs"
    assert not claim_fire(database, JOB, SLOT, "scheduled", "message-b")
    recorded = row(pg, SLOT)
    assert (recorded["status"], recorded["started_message_id"], recorded["duplicates_dropped"]) == (
        "started", "message-a", 1,
    )  # fmt: skip


def test_a_duplicate_message_of_a_slot_is_dropped_before_the_actor_runs(
    pg: Any, stub_broker: StubBroker, redis_client: Any
) -> None:
    """Two messages for one slot (a leader died between publish and commit, a standby fired again)
    on two worker threads at once: the actor runs once."""
    actor = stub_broker.get_actor(JOB)
    options = {"scheduled": {"job": JOB, "at": SLOT.isoformat(), "kind": "scheduled"}}
    sent = [actor.send_with_options(**options) for _ in range(2)]
    run_until_idle(stub_broker, "monitoring")
    recorded = row(pg, SLOT)
    ran = json.loads(redis_client.get(canary_key()))["message_id"]
    assert recorded["started_message_id"] == ran
    assert ran in {m.message_id for m in sent}
    assert recorded["duplicates_dropped"] == 1


def test_a_message_that_could_not_claim_runs_and_claims_once_it_is_done(pg: Any, canary: Any) -> None:
    """PostgreSQL unreachable when a scheduled message starts: it runs unclaimed (at-least-once),
    and is marked started after processing so the job's next fire is not held back."""
    from worker_app.db import Database
    from worker_app.middleware.scheduled import ScheduledFires

    first = fire_at(pg, canary, SLOT)
    message = dramatiq.Message(
        queue_name="monitoring", actor_name=JOB, args=(), kwargs={},
        options={"scheduled": {"job": JOB, "at": SLOT.isoformat(), "kind": "scheduled"}},
        message_id=first.message_id,
    )  # fmt: skip
    middleware = ScheduledFires(
        Database("postgresql+psycopg://postgres@127.0.0.1:1/nowhere?connect_timeout=1")
    )
    middleware.before_process_message(worker_app.broker, message)  # no exception: the actor would run
    assert row(pg, SLOT)["status"] == "enqueued"
    middleware.database = get_runtime().database  # PostgreSQL is back
    middleware.after_process_message(worker_app.broker, message, result=None)
    assert row(pg, SLOT)["started_message_id"] == first.message_id
    assert fire_at(pg, canary, SLOT + timedelta(seconds=10)).outcome == "enqueued"
