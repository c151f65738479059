"""``worker-app schedules backfill``: the missed slots of a periodic job, each enqueued once, keyed
as the scheduler keys its fires (real PostgreSQL and RabbitMQ)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from click.testing import CliRunner

import worker_app
from tests.fixtures.scheduler import purge, queued_messages, ready_count

JOB = "disable_expired_users"  # every 15 min (+ up to 30 s jitter) on subscriptions


def cli(*args: str) -> Any:
    from worker_app.cli import main

    return CliRunner().invoke(main, ["schedules", "backfill", JOB, *args], catch_exceptions=False)


def test_missed_slots_are_enqueued_once_and_fired_ones_never_again(pg: psycopg.Connection[Any]) -> None:
    worker_app.broker.declare_queue("subscriptions", ensure=True)
    purge("subscriptions")
    hour = (datetime.now(UTC) - timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)
    slots = [hour + timedelta(minutes=15 * i) for i in range(4)]  # :00 :15 :30 :45
    insert = ("INSERT INTO scheduler_fires (job, scheduled_at, kind, status, reason) "
              "VALUES (%s, %s, 'scheduled', %s, %s)")  # fmt: skip
    pg.execute(insert, (JOB, slots[0], "started", None))  # ran
    pg.execute(insert, (JOB, slots[1], "skipped", "missed by 900.0 s (grace 600 s)"))  # missed

    span = ("--from", slots[0].isoformat(), "--to", (slots[3] + timedelta(minutes=1)).isoformat())
    dry = cli(*span, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "4 slot(s)" in dry.output and "1 fired already, 3 to enqueue" in dry.output
    assert f"would enqueue {slots[1].isoformat()} (was skipped)" in dry.output
    assert ready_count("subscriptions") == 0

    done = cli(*span, "--yes")
    assert done.exit_code == 0, done.output
    assert "enqueued 3 slot(s) of disable_expired_users" in done.output
    messages = queued_messages("subscriptions")
    assert sorted(m["options"]["scheduled"]["at"] for m in messages) == [s.isoformat() for s in slots[1:]]
    assert {m["options"]["scheduled"]["kind"] for m in messages} == {"backfill"}
    rows = pg.execute(
        "SELECT scheduled_at, kind, status FROM scheduler_fires WHERE job = %s ORDER BY 1", (JOB,)
    )
    assert [(r[1], r[2]) for r in rows] == [("scheduled", "started")] + [("backfill", "enqueued")] * 3

    again = cli(*span, "--yes")
    assert "4 fired already, 0 to enqueue" in again.output
    assert ready_count("subscriptions") == 3  # nothing twice


def test_bad_ranges_are_refused_naming_why(pg: psycopg.Connection[Any]) -> None:
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert "is in the future" in cli("--from", "2026-01-01T00:00", "--to", future).output
    assert "is after --to" in cli("--from", "2026-01-02", "--to", "2026-01-01").output
    assert "expected an ISO 8601 time" in cli("--from", "yesterday").output
    assert "or more slots in that range" in cli("--from", "2000-01-01").output
    unknown = CliRunner().invoke(__import__("worker_app.cli", fromlist=["main"]).main,
                                 ["schedules", "backfill", "nope", "--from", "2026-01-01"])  # fmt: skip
    assert unknown.exit_code == 2 and "no periodic job named 'nope'" in unknown.output
