"""Tier 3: ``RABBITMQ_QUEUE_TYPE=quorum`` on the real RabbitMQ (a quorum queue runs on one node too).

Each test gets a vhost of its own: a queue never changes type, and the run's shared vhost holds
classic queues. The test process sends through a quorum broker of its own (as the API or the
scheduler would), since the actors' broker is the run's classic one.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pika
import pytest
import redis
import requests
import sqlalchemy as sa
from dramatiq.common import dq_name, xq_name

from tests import e2e_actors
from tests.fixtures.services import MANAGEMENT, create_vhost, delete_vhost
from tests.fixtures.worker import WorkerProcess, run_worker, wait_for
from worker_app.bootstrap import DAY_MS
from worker_app.broker import CyberRabbitmqBroker
from worker_app.config import get_settings
from worker_app.middleware.trace import TraceContext
from worker_app.policies import DOMAINS

pytestmark = pytest.mark.rabbitmq
AUTH = ("guest", "guest")
HOLD_MS = 2000  # the workers' DELAY_MAX_HOLD_MS: e2e_delayed_retry's 15 s retry is parked
HOLD_QUEUE = f"cybervpn.hold.{HOLD_MS}ms"
CHANNEL_CLOSED = ("PRECONDITION_FAILED", "NOT_IMPLEMENTED", "inequivalent arg")


@dataclass(frozen=True)
class Vhost:
    name: str
    url: str

    @property
    def worker_env(self) -> dict[str, str]:
        return {"RABBITMQ_URL": self.url, "RABBITMQ_QUEUE_TYPE": "quorum", "DELAY_MAX_HOLD_MS": str(HOLD_MS)}


def retention_ms() -> int:
    return get_settings().dead_letter_retention_days * DAY_MS


@pytest.fixture
def quorum_vhost(rabbitmq_vhost: str) -> Iterator[Vhost]:
    """A vhost of its own for this test (deleted after)."""
    name = f"{rabbitmq_vhost}-quorum-{uuid.uuid4().hex[:6]}"
    create_vhost(name)
    yield Vhost(name, f"amqp://guest:guest@127.0.0.1:5672/{quote(name, safe='')}")
    delete_vhost(name)


@pytest.fixture
def producer(quorum_vhost: Vhost) -> Iterator[CyberRabbitmqBroker]:
    """A quorum broker on the test's vhost, declaring what the workers declare."""
    broker = CyberRabbitmqBroker(
        url=quorum_vhost.url,
        middleware=[TraceContext()],
        max_hold_ms=HOLD_MS,
        dead_message_ttl_ms=retention_ms(),
        queue_type="quorum",
    )
    yield broker
    broker.close()


def queues(vhost: Vhost) -> dict[str, dict[str, Any]]:
    """Every queue of ``vhost`` as the management API shows it (its stats refresh every ~5 s)."""
    response = requests.get(f"{MANAGEMENT}/api/queues/{quote(vhost.name, safe='')}", auth=AUTH, timeout=10)
    response.raise_for_status()
    return {q["name"]: q for q in response.json()}


def consumed(vhost: Vhost, worker: WorkerProcess, consumers: int = 1) -> dict[str, dict[str, Any]]:
    """Wait until every domain queue and its .DQ has ``consumers`` consumers; the vhost's queues."""

    def check() -> dict[str, dict[str, Any]] | None:
        if worker.proc.poll() is not None:
            pytest.fail(f"worker exited with {worker.proc.returncode}:\n{worker.log()[-3000:]}")
        found = queues(vhost)
        names = [n for domain in DOMAINS for n in (domain, dq_name(domain))]
        return found if all(found.get(n, {}).get("consumers", 0) >= consumers for n in names) else None

    found: dict[str, dict[str, Any]] = wait_for(check, 60, f"{consumers} consumer(s) per queue", poll_s=1)
    return found


def published(vhost: Vhost, queue: str) -> int:
    stats = queues(vhost).get(queue, {}).get("message_stats") or {}
    return int(stats.get("publish", 0))


def ready_count(vhost: Vhost, queue: str) -> int:
    with pika.BlockingConnection(pika.URLParameters(vhost.url)) as conn:
        return int(conn.channel().queue_declare(queue, passive=True).method.message_count)


def dead_letter(engine: sa.Engine, message_id: str) -> Any:
    with engine.connect() as conn:
        query = sa.text("SELECT * FROM dead_letters WHERE message_id = :id")
        return conn.execute(query, {"id": message_id}).first()


def quorum_work_queue(domain: str) -> dict[str, object]:
    return {
        "x-queue-type": "quorum",
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": f"{domain}.XQ",
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
        "x-delivery-limit": 1000,
    }


def test_a_quorum_worker_declares_every_queue_quorum_and_a_second_worker_declares_them_again(
    quorum_vhost: Vhost, clean_tables: sa.Engine, redis_client: redis.Redis, tmp_path: Path
) -> None:
    # Given RABBITMQ_QUEUE_TYPE=quorum and an empty vhost, When a worker starts
    with run_worker(tmp_path / "first.log", env=quorum_vhost.worker_env, ready=False) as first:
        declared = consumed(quorum_vhost, first)

        # Then every domain queue and its .DQ is quorum and dead-letters into its .XQ at least once
        for domain in DOMAINS:
            for name in (domain, dq_name(domain)):
                assert (declared[name]["type"], declared[name]["arguments"]) == (
                    "quorum",
                    quorum_work_queue(domain),
                ), name
            # And each .XQ is quorum and keeps dead letters for the retention
            dead = declared[xq_name(domain)]
            assert (dead["type"], dead["arguments"]) == (
                "quorum",
                {"x-queue-type": "quorum", "x-message-ttl": retention_ms()},
            )

        # When a second worker starts on the same queues while the first runs
        with run_worker(tmp_path / "second.log", env=quorum_vhost.worker_env, ready=False) as second:
            # Then its declarations are accepted and both consume every queue
            consumed(quorum_vhost, second, consumers=2)
            assert second.proc.poll() is None and first.proc.poll() is None

    # And RabbitMQ closed no channel on either
    for worker in (first, second):
        assert [e for e in CHANNEL_CLOSED if e in worker.log()] == []


def test_on_quorum_queues_work_runs_retries_pass_the_dq_and_hold_queue_and_dead_messages_reach_the_xq(
    quorum_vhost: Vhost,
    producer: CyberRabbitmqBroker,
    clean_tables: sa.Engine,
    redis_client: redis.Redis,
    tmp_path: Path,
) -> None:
    # Given a quorum worker that holds delayed messages in memory for at most 2 s
    with run_worker(tmp_path / "worker.log", env=quorum_vhost.worker_env, ready=False) as worker:
        consumed(quorum_vhost, worker)

        # When one actor fails once (retried 200 ms later), one fails and is retried 15 s later, and
        # one fails permanently
        producer.enqueue(e2e_actors.e2e_fails_once.message("runs:once"))
        producer.enqueue(e2e_actors.e2e_delayed_retry.message("runs:delayed"))
        permanent = producer.enqueue(e2e_actors.e2e_permanent.message(42))

        # Then the permanent failure is recorded dead, and RabbitMQ's copy is in payments.XQ
        row = wait_for(lambda: dead_letter(clean_tables, permanent.message_id), 30, "the dead letter")
        assert (row.reason, row.attempts, row.queue_name) == ("permanent_error", 1, "payments")
        wait_for(lambda: ready_count(quorum_vhost, "payments.XQ") == 1, 30, "the copy in payments.XQ")

        # And the quick retry ran through payments.DQ and succeeded
        wait_for(lambda: redis_client.get("runs:once") == "2", 30, "the retry of e2e_fails_once")
        wait_for(lambda: published(quorum_vhost, "payments.DQ") >= 1, 30, "payments.DQ's publish", poll_s=1)

        # And the 15 s retry was parked in the quorum hold queue, came back through monitoring.DQ, ran once
        wait_for(lambda: redis_client.get("runs:delayed:done"), 60, "the delayed retry")
        assert redis_client.get("runs:delayed") == "2"
        wait_for(lambda: published(quorum_vhost, HOLD_QUEUE) >= 1, 30, "the hold queue's publish", poll_s=1)
        hold = queues(quorum_vhost)[HOLD_QUEUE]
        assert (hold["type"], hold["arguments"]) == (
            "quorum",
            {
                "x-queue-type": "quorum",
                "x-message-ttl": HOLD_MS,
                "x-dead-letter-exchange": "",
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            },
        )
        assert published(quorum_vhost, "monitoring.DQ") >= 1
        assert worker.proc.poll() is None
    assert [e for e in CHANNEL_CLOSED if e in worker.log()] == []


def test_a_message_nacked_while_its_xq_is_missing_waits_in_its_quorum_queue(
    quorum_vhost: Vhost, producer: CyberRabbitmqBroker
) -> None:
    # Given a quorum domain queue whose .XQ is gone (deleted by hand, or its replicas unavailable)
    producer.declare_queue("analytics", ensure=True)
    producer.channel.queue_delete("analytics.XQ")
    producer.enqueue(e2e_actors.e2e_replay_count.message("runs:nacked", 1))

    # When a consumer dead-letters the message as Dramatiq does (nack, requeue=False)
    consumer = producer.consume("analytics", prefetch=1, timeout=500)
    try:
        message = wait_for(lambda: next(consumer), 10, "the message")
        consumer.nack(message)
    finally:
        consumer.close()  # sends the nack first

    # Then RabbitMQ keeps it in analytics until a target takes it (at-most-once would drop it)
    wait_for(
        lambda: queues(quorum_vhost)["analytics"].get("messages_dlx") == 1,
        30,
        "the dead letter to wait in analytics",
        poll_s=1,
    )
