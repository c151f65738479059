"""Tier 3: ``worker-app queues migrate --to quorum`` on the real RabbitMQ.

Each test has a source vhost of its own whose queues a classic broker declared (as workers with
``RABBITMQ_QUEUE_TYPE=classic`` do), and a target vhost the command creates; both are deleted after.
The command runs as an operator runs it: ``worker-app`` in a subprocess, RABBITMQ_URL on the source.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pika
import pytest
import redis
import requests
import sqlalchemy as sa
from dramatiq import Message
from dramatiq.common import current_millis, dq_name, xq_name

from tests import e2e_actors
from tests.fixtures.services import MANAGEMENT, create_vhost, delete_vhost
from tests.fixtures.worker import ROOT, run_worker, wait_for
from worker_app import ordered
from worker_app.bootstrap import DAY_MS
from worker_app.broker import CyberRabbitmqBroker
from worker_app.config import get_settings
from worker_app.policies import DOMAINS
from worker_app.queue_arguments import QueueKind, queue_arguments
from worker_app.queue_migration import (
    BATCH_SIZE,
    ConfirmedPublisher,
    Deployment,
    MigrationError,
    move_queue,
    plan_migration,
)

pytestmark = pytest.mark.rabbitmq
WORKER_APP = str(Path(sys.executable).parent / "worker-app")
AUTH = ("guest", "guest")
HOLD_MS = 300_000  # held messages stay in the hold queue for the whole test
HOLD_QUEUE = f"cybervpn.hold.{HOLD_MS}ms"
READY, DELAYED, DEAD = 600, 300, 200  # per domain: 9 domains x 1,100 = 9,900
HELD = 100  # parked in the hold queue: 10,000 in all
#: The domains loaded with messages: the nine whose work is in their own queue (an ordered domain's is
#: in its shards, whose declaration the migration copies: see the quorum-arguments test).
LOADED = tuple(d for d in DOMAINS if ordered.ordered_domain(d) is None)
OUR_QUEUES = [HOLD_QUEUE, *(q for d in LOADED for q in (d, dq_name(d), xq_name(d)))]
#: Every queue of the app, the ordered domain's shards included (all declared in the source vhost).
ALL_QUEUES = [HOLD_QUEUE, *(q for d in ordered.with_shards(DOMAINS) for q in (d, dq_name(d), xq_name(d)))]
PROPERTY_FIELDS = ("content_type", "content_encoding", "delivery_mode", "priority", "correlation_id",
                   "reply_to", "expiration", "message_id", "timestamp", "type", "app_id")  # fmt: skip
CHANNEL_CLOSED = ("PRECONDITION_FAILED", "NOT_IMPLEMENTED", "inequivalent arg")


def retention_ms() -> int:
    return get_settings().dead_letter_retention_days * DAY_MS


def url(vhost: str) -> str:
    return f"amqp://guest:guest@127.0.0.1:5672/{quote(vhost, safe='')}"


@dataclass(frozen=True)
class Vhosts:
    source: str
    target: str


@dataclass
class Load:
    """What the test published: each message id's queue and properties."""

    queue_of: dict[str, str] = field(default_factory=dict)
    properties: dict[str, pika.BasicProperties] = field(default_factory=dict)

    def add(self, queue: str, message: Message[Any], properties: pika.BasicProperties) -> None:
        self.queue_of[message.message_id] = queue
        self.properties[message.message_id] = properties


@pytest.fixture
def vhosts(rabbitmq_vhost: str) -> Iterator[Vhosts]:
    """A source vhost with every queue declared classic, as a classic broker declares it."""
    source = f"{rabbitmq_vhost}-migrate-{uuid.uuid4().hex[:6]}"
    create_vhost(source)
    broker = CyberRabbitmqBroker(url=url(source), middleware=[], max_hold_ms=HOLD_MS,
                                 dead_message_ttl_ms=retention_ms(), queue_type="classic")  # fmt: skip
    for queue in ordered.with_shards(DOMAINS):  # an ordered domain's shards too (single active consumer)
        broker.declare_queue(queue, ensure=True)
    broker._declare_hold()
    broker.close()
    yield Vhosts(source, f"{source}-quorum")
    delete_vhost(source)
    delete_vhost(f"{source}-quorum")


def migrate(vhosts: Vhosts, *args: str, target: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {"RABBITMQ_URL": url(vhosts.source), "DELAY_MAX_HOLD_MS": str(HOLD_MS)}
    command = [WORKER_APP, "queues", "migrate", "--to", "quorum", "--target-vhost", target or vhosts.target]
    return subprocess.run([*command, *args], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          check=False, env={**os.environ, **env})  # fmt: skip


def migrated(vhosts: Vhosts, *args: str) -> dict[str, Any]:
    """Run the command with --json; it must succeed. Its result."""
    done = migrate(vhosts, "--json", *args)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)["result"]
    return result


def moved_by_queue(result: dict[str, Any]) -> dict[str, int]:
    return {q["name"]: q["moved"] for q in result["queues"] if q["moved"]}


def publish(vhost: str, messages: list[tuple[str, str, bytes, pika.BasicProperties]]) -> None:
    """Publish with publisher confirms (the command's own confirm batching)."""
    with pika.BlockingConnection(pika.URLParameters(url(vhost))) as connection:
        publisher = ConfirmedPublisher(connection)
        for start in range(0, len(messages), BATCH_SIZE):
            sequences = [publisher.publish(*m) for m in messages[start : start + BATCH_SIZE]]
            publisher.wait_for_confirms()
            assert all(publisher.outcomes(sequences)), publisher.problem


def dramatiq_message(domain: str, n: int, *, eta_ms: int | None = None) -> Message[Any]:
    """A real message of the app (``e2e_replay_count``) on ``domain``; with ``eta_ms`` the copy
    Dramatiq's delayed enqueue puts into ``<domain>.DQ``."""
    message = e2e_actors.e2e_replay_count.message("runs:migrated", n).copy(queue_name=domain)
    if eta_ms is None:
        return message
    return message.copy(queue_name=dq_name(domain), options={**message.options, "eta": eta_ms})


def rich_properties(message: Message[Any], n: int, *, expiring: bool = True) -> pika.BasicProperties:
    """Dramatiq's persistent delivery mode plus every other property a publisher may set."""
    return pika.BasicProperties(
        delivery_mode=2, message_id=message.message_id, content_type="application/json",
        content_encoding="utf-8", headers={"n": n, "origin": {"test": "migration", "flags": [1, 2]}},
        priority=n % 3, correlation_id=f"corr-{n}", reply_to="replies", timestamp=1_700_000_000 + n,
        type="dramatiq", app_id="cybervpn-test", expiration="86400000" if expiring and n % 10 == 0 else None,
    )  # fmt: skip


def count(vhost: str, queue: str) -> int | None:
    """Ready messages in ``queue`` right now (a passive declare); ``None`` if it does not exist."""
    with pika.BlockingConnection(pika.URLParameters(url(vhost))) as connection:
        try:
            return int(connection.channel().queue_declare(queue, passive=True).method.message_count)
        except pika.exceptions.ChannelClosedByBroker as e:
            assert e.reply_code == 404
            return None


def counts(vhost: str, queues: list[str] = OUR_QUEUES) -> dict[str, int | None]:
    return {queue: count(vhost, queue) for queue in queues}


def reject_into_xq(vhost: str, queue: str, n: int) -> None:
    """Dead-letter the first ``n`` messages of ``queue`` as Dramatiq does (nack, requeue=False)."""
    with pika.BlockingConnection(pika.URLParameters(url(vhost))) as connection:
        channel = connection.channel()
        tags = [channel.basic_get(queue, auto_ack=False)[0].delivery_tag for _ in range(n)]
        channel.basic_nack(tags[-1], multiple=True, requeue=False)


def load_source(
    vhost: str, ready: int = READY, delayed: int = DELAYED, dead: int = DEAD, held: int = HELD
) -> Load:
    """Per domain ``dead`` messages rejected into .XQ, ``ready`` in the queue, ``delayed`` in .DQ
    (an hour away); ``held`` parked in the hold queue as the broker parks them."""
    load, n, eta = Load(), 0, current_millis() + 3_600_000
    for domain in LOADED:
        batch = []
        for _ in range(dead):
            n += 1
            message = dramatiq_message(domain, n)
            batch.append(("", domain, message.encode(), rich_properties(message, n, expiring=False)))
            load.add(xq_name(domain), message, batch[-1][3])
        publish(vhost, batch)
        reject_into_xq(vhost, domain, dead)
    batch = []
    for domain in LOADED:
        for queue, number, eta_ms in ((domain, ready, None), (dq_name(domain), delayed, eta)):
            for _ in range(number):
                n += 1
                message = dramatiq_message(domain, n, eta_ms=eta_ms)
                batch.append(("", queue, message.encode(), rich_properties(message, n)))
                load.add(queue, message, batch[-1][3])
    for i in range(held):
        message = dramatiq_message(LOADED[i % len(LOADED)], n + i + 1, eta_ms=eta)
        parked = pika.BasicProperties(delivery_mode=2)  # exactly what the broker's park() sends
        batch.append((HOLD_QUEUE, message.queue_name, message.encode(), parked))
        load.add(HOLD_QUEUE, message, parked)
    publish(vhost, batch)
    return load


def expected_counts(load: Load) -> dict[str, int | None]:
    found = Counter(load.queue_of.values())
    return {queue: found.get(queue, 0) for queue in OUR_QUEUES}


def drain(vhost: str, expected: dict[str, int | None]) -> list[tuple[str, Any, Any, bytes]]:
    """The ``expected[queue]`` messages of each queue, consumed: (queue, method, properties, body)."""
    found = []
    with pika.BlockingConnection(pika.URLParameters(url(vhost))) as connection:
        channel = connection.channel()
        for queue, n in expected.items():
            for _ in range(n or 0):
                method, properties, body = next(channel.consume(queue, auto_ack=True, inactivity_timeout=10))
                assert method is not None, f"{queue}: fewer messages than counted"
                found.append((queue, method, properties, body))
            channel.cancel()
    return found


def management_queues(vhost: str) -> dict[str, dict[str, Any]]:
    response = requests.get(f"{MANAGEMENT}/api/queues/{quote(vhost, safe='')}", auth=AUTH, timeout=10)
    response.raise_for_status()
    return {q["name"]: q for q in response.json()}


def unacked(vhost: str, queue: str) -> int | None:
    """Unacked messages of ``queue`` as the management API counts them (its stats lag ~5 s)."""
    found: int | None = management_queues(vhost)[queue].get("messages_unacknowledged")
    return found


def vhost_exists(vhost: str) -> bool:
    response = requests.get(f"{MANAGEMENT}/api/vhosts/{quote(vhost, safe='')}", auth=AUTH, timeout=10)
    return response.status_code == 200


def quorum_arguments(queue: str) -> dict[str, object]:
    """The broker's quorum declaration of ``queue`` (DELAY_MAX_HOLD_MS = HOLD_MS)."""
    kinds = {HOLD_QUEUE: QueueKind.HOLD, **{dq_name(d): QueueKind.DELAY for d in LOADED},
             **{xq_name(d): QueueKind.DEAD for d in LOADED}}  # fmt: skip
    domain = queue.removesuffix(".DQ").removesuffix(".XQ")
    kind = kinds.get(queue, QueueKind.DOMAIN)
    return queue_arguments(
        kind, "quorum", queue_name=domain, dead_message_ttl_ms=retention_ms(), max_hold_ms=HOLD_MS
    )


def assert_kept_as_published(load: Load, message_id: str, queue: str, properties: Any) -> None:
    """Every property as published; a dead message also carries RabbitMQ's x-death from its queue
    (quorum queues add ``x-delivery-count`` when they deliver)."""
    published = load.properties[message_id]
    assert [getattr(properties, f) for f in PROPERTY_FIELDS] == [
        getattr(published, f) for f in PROPERTY_FIELDS
    ]
    headers = dict(properties.headers or {})
    death = headers.pop("x-death", None)
    rabbitmq_own = ("x-first-death", "x-delivery-count")
    assert {k: v for k, v in headers.items() if not k.startswith(rabbitmq_own)} == (published.headers or {})
    if queue.endswith(".XQ"):
        assert death and death[0]["queue"] == queue.removesuffix(".XQ") and death[0]["reason"] == "rejected"


def test_a_dry_run_prints_the_plan_and_moves_nothing(vhosts: Vhosts) -> None:
    # Given classic queues holding 10,000 messages
    load = load_source(vhosts.source)

    # When the migration is only planned
    done = migrate(vhosts, "--dry-run")

    # Then it prints every queue with its type and count, and the quorum declarations
    assert done.returncode == 0, done.stderr
    assert f"target vhost {vhosts.target!r} (will be created)" in done.stdout
    declared = 1 + 3 * len(ordered.with_shards(DOMAINS))  # the hold queue; each queue with .DQ and .XQ
    assert f"10000 message(s) in {declared} queue(s) to move" in done.stdout
    assert re.search(r"^payments\.XQ +classic +200 +\S+ +0  move$", done.stdout, re.MULTILINE)
    assert re.search(rf"^{re.escape(HOLD_QUEUE)} +classic +100 +\S+ +0  move$", done.stdout, re.MULTILINE)
    for queue in OUR_QUEUES:
        assert f"declare {queue} (durable, new" in done.stdout
    assert '"x-queue-type": "quorum"' in done.stdout
    # an ordered domain's shard keeps its single active consumer (and nothing else gets one)
    shard = re.search(r"^declare bot_updates\.07 \(durable, new[^:]*: (.*)$", done.stdout, re.MULTILINE)
    assert shard is not None and json.loads(shard.group(1))["x-single-active-consumer"] is True
    assert done.stdout.count("x-single-active-consumer") == 16
    # And nothing was declared, created or moved
    assert not vhost_exists(vhosts.target)
    assert counts(vhosts.source) == expected_counts(load)


def test_every_message_moves_once_into_the_quorum_queue_of_the_same_name_and_a_rerun_sweeps(
    vhosts: Vhosts,
) -> None:
    # Given classic queues holding 10,000 messages: ready, delayed (.DQ), dead (.XQ) and held
    load = load_source(vhosts.source)
    assert counts(vhosts.source) == expected_counts(load)

    # When they are migrated
    first = migrated(vhosts)

    # Then every source queue is empty, and the target holds every message in the queue of its name
    assert first["ok"] and first["created_vhost"] and first["moved"] == 10_000
    assert counts(vhosts.source) == dict.fromkeys(OUR_QUEUES, 0)
    assert counts(vhosts.target) == expected_counts(load)
    # And each target queue is quorum, declared as the broker declares it
    declared = management_queues(vhosts.target)
    for queue in OUR_QUEUES:
        assert (declared[queue]["type"], declared[queue]["arguments"]) == ("quorum", quorum_arguments(queue))

    # When it runs again, Then there is nothing to move
    assert migrated(vhosts)["moved"] == 0

    # When producers still published to the source afterwards, Then the next run sweeps those
    eta = current_millis() + 60_000
    late = [dramatiq_message("sync", n) for n in range(50_000, 50_025)]
    late += [dramatiq_message("payments", n, eta_ms=eta) for n in range(60_000, 60_005)]
    late_properties = [rich_properties(m, i) for i, m in enumerate(late)]
    publish(
        vhosts.source, [("", m.queue_name, m.encode(), p) for m, p in zip(late, late_properties, strict=True)]
    )
    for m, p in zip(late, late_properties, strict=True):
        load.add(m.queue_name, m, p)
    assert moved_by_queue(migrated(vhosts)) == {"sync": 25, "payments.DQ": 5}

    # When the old queues are deleted, Then every (empty, unused) source queue is gone
    cleanup = migrated(vhosts, "--delete-old")
    assert (cleanup["moved"], sorted(cleanup["deleted"]), cleanup["kept"]) == (0, sorted(ALL_QUEUES), [])
    assert counts(vhosts.source, ALL_QUEUES) == dict.fromkeys(ALL_QUEUES)

    # And the target holds exactly the published message ids, once each, in their own queues
    assert counts(vhosts.target) == expected_counts(load)
    messages = [(queue, method, properties, Message.decode(body)) for queue, method, properties, body in
                drain(vhosts.target, expected_counts(load))]  # fmt: skip
    found = Counter(message.message_id for _, _, _, message in messages)
    assert set(found) == set(load.queue_of) and max(found.values()) == 1 and len(messages) == 10_030
    for queue, method, properties, message in messages:
        assert load.queue_of[message.message_id] == queue
        if queue == HOLD_QUEUE:  # parked by the broker: keeps its way back to its .DQ when the hold expires
            assert (method.exchange, method.routing_key) == (HOLD_QUEUE, message.queue_name)
        assert_kept_as_published(load, message.message_id, queue, properties)


def test_queues_with_consumers_are_refused_unless_forced_and_what_the_consumer_held_is_swept_later(
    vhosts: Vhosts,
) -> None:
    # Given a worker-like consumer on payments holding one message unacked
    load = load_source(vhosts.source, ready=20, delayed=2, dead=1, held=3)
    consumer = pika.BlockingConnection(pika.URLParameters(url(vhosts.source)))
    channel = consumer.channel()
    channel.basic_qos(prefetch_count=1)
    held: list[int] = []
    channel.basic_consume("payments", lambda _ch, method, _p, _b: held.append(method.delivery_tag))
    wait_for(lambda: consumer.process_data_events(0.05) or held, 10, "the consumer's delivery")

    # When the migration runs, Then it refuses, naming the queue, and does nothing
    refused = migrate(vhosts)
    assert refused.returncode == 1
    assert "payments (1 consumer(s)" in refused.stderr and "--force" in refused.stderr
    assert not vhost_exists(vhosts.target)

    # When it is forced, Then everything but the consumer's unacked message moves
    forced = migrated(vhosts, "--force")
    assert forced["ok"] and forced["moved"] == len(load.queue_of) - 1
    assert count(vhosts.source, "payments") == 0

    # When the consumer goes away, its message returns to the source, and the next run moves it
    consumer.close()
    wait_for(lambda: count(vhosts.source, "payments") == 1, 10, "the unacked message back in payments")
    wait_for(lambda: unacked(vhosts.source, "payments") == 0, 30, "the management API's stats", poll_s=1)
    # (a later read of those stats can still show the old unacked count: the command then refuses and
    # moves nothing, as documented, and is run again)
    rerun = wait_for(lambda: (done := migrate(vhosts, "--json")).returncode == 0 and done, 30,
                     "the migration to run once the stats show no unacked message", poll_s=2)  # fmt: skip
    assert moved_by_queue(json.loads(rerun.stdout)["result"]) == {"payments": 1}
    assert sum(c or 0 for c in counts(vhosts.target).values()) == len(load.queue_of)


def test_a_target_vhost_equal_to_the_source_is_refused(vhosts: Vhosts) -> None:
    done = migrate(vhosts, target=vhosts.source)
    assert done.returncode == 2
    assert f"--target-vhost {vhosts.source!r} is the source vhost" in done.stderr


def test_a_quorum_worker_on_the_target_vhost_runs_the_moved_messages(
    vhosts: Vhosts, clean_tables: sa.Engine, redis_client: redis.Redis, tmp_path: Path
) -> None:
    # Given three ready messages and two delayed ones (due in a second) in the classic source
    ready = [e2e_actors.e2e_replay_count.message("runs:migrated", n) for n in (1, 2, 3)]
    delayed = [dramatiq_message("analytics", n, eta_ms=current_millis() + 1000) for n in (4, 5)]
    publish(vhosts.source, [("", m.queue_name, m.encode(), pika.BasicProperties(delivery_mode=2))
                            for m in ready + delayed])  # fmt: skip

    # When they are migrated and a quorum worker starts on the target vhost
    assert migrated(vhosts)["moved"] == 5
    env = {
        "RABBITMQ_URL": url(vhosts.target),
        "RABBITMQ_QUEUE_TYPE": "quorum",
        "DELAY_MAX_HOLD_MS": str(HOLD_MS),
    }
    with run_worker(tmp_path / "worker.log", env=env, ready=False) as worker:
        # Then it runs each of them once (its own declarations matched the migrated queues)
        wait_for(
            lambda: len(redis_client.hgetall("runs:migrated")) == 5, 60, "the five moved messages to run"
        )
        assert redis_client.hgetall("runs:migrated") == {str(n): "1" for n in range(1, 6)}
        assert worker.proc.poll() is None
    assert [e for e in CHANNEL_CLOSED if e in worker.log()] == []


@pytest.mark.parametrize(
    ("queue", "refusal"),
    [("payments", "312 NO_ROUTE"), (HOLD_QUEUE, f"NOT_FOUND - no exchange '{HOLD_QUEUE}'")],
    ids=["returned", "channel-closed"],
)
def test_a_message_the_target_does_not_take_stays_in_the_source_and_stops_the_move(
    vhosts: Vhosts, queue: str, refusal: str
) -> None:
    # Given 20 messages in a source queue, and a target vhost where nothing was declared
    route = (HOLD_QUEUE, "payments.DQ") if queue == HOLD_QUEUE else ("", "payments")
    messages = [dramatiq_message("payments", n) for n in range(20)]
    publish(vhosts.source, [(*route, m.encode(), pika.BasicProperties(delivery_mode=2)) for m in messages])
    create_vhost(vhosts.target)
    deployment = Deployment([url(vhosts.source)], MANAGEMENT, retention_ms(), HOLD_MS)
    plan = next(q for q in plan_migration(deployment, vhosts.target, [queue]).queues if q.name == queue)

    # When its messages are moved in batches of 7, Then the first batch is refused and the move stops
    with (
        pika.BlockingConnection(pika.URLParameters(url(vhosts.source))) as source,
        pika.BlockingConnection(pika.URLParameters(url(vhosts.target))) as target,
        pytest.raises(MigrationError, match=re.escape(refusal)) as stopped,
    ):
        move_queue(source.channel(), ConfirmedPublisher(target), plan, batch_size=7)
    assert str(stopped.value).startswith(f"{queue}: the target did not take 7 message(s)")

    # And every message is still in the source queue
    assert count(vhosts.source, queue) == 20
