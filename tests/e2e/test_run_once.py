"""``worker-app run ACTOR [ARGS] [--once]``: enqueue, or run once here through the full middleware
stack (real PostgreSQL, Redis and RabbitMQ)."""

from __future__ import annotations

import uuid
from typing import Any

import redis as redis_lib
import sqlalchemy as sa
from click.testing import CliRunner

import tests.e2e_actors  # noqa: F401  (declares the actors run below)
from tests.fixtures.scheduler import purge, ready_count


def cli(*args: str) -> Any:
    from worker_app.cli import main

    return CliRunner().invoke(main, ["run", *args])


def test_once_runs_here_with_the_stack_and_prints_the_result(
    clean_tables: sa.Engine, redis_client: redis_lib.Redis, rabbitmq_vhost: str
) -> None:
    import worker_app

    worker_app.broker.declare_queue("analytics", ensure=True)
    purge("analytics")
    key = f"once-{uuid.uuid4().hex[:6]}"
    done = cli("e2e_replay_count", f'"{key}"', "7", "--once")
    assert done.exit_code == 0, done.output
    assert "e2e_replay_count done in" in done.output and done.output.strip().endswith("null")
    assert redis_client.hget(key, "7") == "1"
    assert ready_count("analytics") == 0  # nothing went through RabbitMQ

    failed = cli("e2e_transient", f'"{key}:t"', "--once")
    assert failed.exit_code == 1
    assert (
        "e2e_transient failed after" in failed.output
        and "UpstreamUnavailable: panel answered 503" in failed.output
    )
    assert redis_client.get(f"{key}:t") == "1"  # one attempt, not retried
    assert ready_count("analytics") == 0 and ready_count("analytics.DQ") == 0
    with clean_tables.connect() as conn:
        dead = conn.execute(
            sa.text("SELECT reason, traceback FROM dead_letters WHERE actor_name = 'e2e_transient'")
        ).one()
    assert dead.reason == "retries_exhausted" and "UpstreamUnavailable" in dead.traceback


def test_without_once_it_is_enqueued_and_bad_arguments_are_named(
    clean_tables: sa.Engine, rabbitmq_vhost: str
) -> None:
    import worker_app

    worker_app.broker.declare_queue("analytics", ensure=True)
    purge("analytics")
    sent = cli("e2e_replay_count", '"k"', "1")
    assert sent.exit_code == 0 and "enqueued e2e_replay_count on analytics: message" in sent.output
    assert ready_count("analytics") == 1
    purge("analytics")
    bad = cli("e2e_replay_count", '"k"', '"one"', "--once")
    assert bad.exit_code == 2 and "e2e_replay_count" in bad.output and "n" in bad.output
    assert cli("no_such_actor", "--once").exit_code == 2
    assert "--kwargs: expected a JSON object" in cli("e2e_replay_count", "--kwargs", "[1]").output
