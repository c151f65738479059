"""Tier 3: delayed retries survive RabbitMQ's consumer_timeout (HAZARDS.md, RabbitMQ 3.10).

RabbitMQ closes a channel whose delivery stays unacked past ``consumer_timeout``. Dramatiq holds
delayed messages unacked until their ETA, so a retry delayed beyond the timeout kills the channel
and is redelivered. The test lowers the broker's timeout to 5 s at runtime and retries a message
15 s later.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
import sqlalchemy as sa

from tests import e2e_actors
from tests.fixtures.chaos import CHANNEL_ERRORS
from tests.fixtures.services import queue_depth
from tests.fixtures.worker import run_worker, wait_for

pytestmark = [pytest.mark.rabbitmq, pytest.mark.exclusive]


def test_retry_delayed_beyond_consumer_timeout_runs_exactly_once_without_channel_errors(
    consumer_timeout_5s: None,
    rabbitmq_vhost: str,
    clean_tables: sa.Engine,
    redis_client: redis.Redis,
    tmp_path: Path,
) -> None:
    # Given consumer_timeout = 5 s and a worker that holds delayed messages for at most 2 s
    env = {
        "RABBITMQ_CONSUMER_TIMEOUT_MS": "5000",
        "TIME_LIMIT_MS": "4000",
        "DELAY_MAX_HOLD_MS": "2000",
        "NOTIFICATION_DRAIN_BUDGET_S": "2",  # must stay below TIME_LIMIT_MS
        "CLEANUP_STATEMENT_TIMEOUT_MS": "2000",  # so must this
    }
    with run_worker(tmp_path / "worker.log", env=env) as worker:
        # When an actor fails and its retry is delayed by 15 s (three times the timeout)
        e2e_actors.e2e_delayed_retry.send("runs:delayed")

        # Then the retry runs, once: two runs in all, and nothing is left anywhere to run again
        wait_for(lambda: redis_client.get("runs:delayed:done"), 60, "the delayed retry to complete")
        for queue in ("monitoring", "monitoring.DQ", "cybervpn.hold.2000ms"):
            wait_for(
                lambda q=queue: queue_depth(rabbitmq_vhost, q) == 0, 30, f"{queue} to be empty", poll_s=1
            )
        assert redis_client.get("runs:delayed") == "2"
        log = worker.log()

    # And RabbitMQ never closed a channel on the worker
    assert [e for e in CHANNEL_ERRORS if e in log] == []


def test_without_the_hold_bound_the_same_delay_breaks_the_channel(
    consumer_timeout_5s: None,
    rabbitmq_vhost: str,
    clean_tables: sa.Engine,
    redis_client: redis.Redis,
    tmp_path: Path,
) -> None:
    # Given the same broker timeout, but a worker configured as if it were still 30 minutes
    # (so it holds the 15 s delay in memory, as plain Dramatiq does)
    env = {"RABBITMQ_CONSUMER_TIMEOUT_MS": "1800000", "DELAY_MAX_HOLD_MS": "600000"}
    with run_worker(tmp_path / "worker.log", env=env) as worker:
        # When the same retry is delayed by 15 s
        e2e_actors.e2e_delayed_retry.send("runs:unbounded")

        # Then RabbitMQ closes the channel holding it (the hazard the hold bound prevents)
        wait_for(lambda: "PRECONDITION_FAILED" in worker.log(), 60, "RabbitMQ to close the channel")
