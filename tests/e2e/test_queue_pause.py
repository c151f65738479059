"""Pausing a queue (issue 23): its depth grows while the others drain, the pause survives a worker
restart, and resuming drains it, each message once. Two worker processes on the real RabbitMQ."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pika
import redis as redis_lib
import sqlalchemy as sa
from click.testing import CliRunner

from tests.e2e_actors import e2e_replay_count, e2e_sync_count
from tests.fixtures.worker import wait_for, worker_group

MESSAGES = 200


def counts(vhost: str, queue: str) -> tuple[int, int]:
    """(ready, consumers) of ``queue`` right now (a passive declare: exact, not the management API's
    5-second-old statistics)."""
    import os

    connection = pika.BlockingConnection(pika.URLParameters(os.environ["RABBITMQ_URL"]))
    try:
        frame = connection.channel().queue_declare(queue, passive=True)
        return int(frame.method.message_count), int(frame.method.consumer_count)
    finally:
        connection.close()


def cli(*args: str) -> Any:
    from worker_app.cli import main

    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result


def test_a_paused_queue_grows_while_others_drain_and_stays_paused_across_a_restart(
    tmp_path: Path, rabbitmq_vhost: str, clean_tables: sa.Engine, redis_client: redis_lib.Redis
) -> None:
    run = f"pause-{uuid.uuid4().hex[:6]}"
    queues = ("analytics", "sync")

    def worker(name: str, ready: bool = True) -> Any:
        return worker_group(tmp_path / name, {}, queues, processes=1, threads=4, wait_consuming=ready)

    with worker("w1.log") as first, worker("w2.log"):
        wait_for(lambda: counts(rabbitmq_vhost, "analytics")[1] == 2, 30, "both workers on analytics")
        paused_at = time.monotonic()
        result = cli("queues", "pause", "analytics", "--reason", "test")
        assert result.exit_code == 0 and "analytics paused" in result.output
        wait_for(
            lambda: counts(rabbitmq_vhost, "analytics")[1] == 0, 15, "both workers to let go of analytics"
        )
        print(
            f"\n[pause] both workers stopped consuming {time.monotonic() - paused_at:.1f} s after the pause"
        )
        assert counts(rabbitmq_vhost, "analytics.DQ")[1] == 0  # its delay queue too
        assert counts(rabbitmq_vhost, "sync")[1] == 2  # the other queue is not touched

        for n in range(MESSAGES):
            e2e_replay_count.send(f"{run}:a", n)
            e2e_sync_count.send(f"{run}:s", n)
        wait_for(lambda: redis_client.hlen(f"{run}:s") == MESSAGES, 60, "the sync queue to drain")
        assert counts(rabbitmq_vhost, "analytics")[0] == MESSAGES
        assert redis_client.hlen(f"{run}:a") == 0

        # a worker restarted while the queue is paused does not consume it
        first.proc.terminate()
        first.proc.wait(timeout=60)
        with worker("w1-again.log", ready=False):  # it answers no heartbeat on analytics: paused
            wait_for(lambda: counts(rabbitmq_vhost, "sync")[1] == 2, 30, "the restarted worker on sync")
            assert counts(rabbitmq_vhost, "analytics") == (MESSAGES, 0)
            listed = cli("queues")
            assert "analytics      PAUSED since" in listed.output and "by cli: test" in listed.output
            assert cli("queues", "drain", "analytics").exit_code == 1  # not drained, and says how much

            result = cli("queues", "resume", "analytics")
            assert result.exit_code == 0 and "analytics resumed" in result.output
            drained = cli("queues", "drain", "analytics", "--wait", "--timeout", "120", "--poll", "0.5")
            assert drained.exit_code == 0, drained.output
            wait_for(lambda: redis_client.hlen(f"{run}:a") == MESSAGES, 60, "every analytics message")
    runs = redis_client.hgetall(f"{run}:a")
    assert sorted(int(n) for n in runs) == list(range(MESSAGES))
    assert set(runs.values()) == {"1"}  # each ran once: nothing was requeued in a loop or twice


def test_pausing_something_that_is_not_a_domain_queue_is_refused(clean_tables: sa.Engine) -> None:
    result = CliRunner().invoke(
        __import__("worker_app.cli", fromlist=["main"]).main, ["queues", "pause", "nope"]
    )
    assert result.exit_code != 0
    assert "'nope' is not a domain queue (one of: notifications," in result.output
    assert cli("queues", "resume", "payments").output.strip() == "payments was not paused"
