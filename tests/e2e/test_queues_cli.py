"""``worker-app queues``: depths from the management API, and from AMQP with the plugin disabled;
open dead letters from PostgreSQL beside the .XQ counts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.fixtures.chaos import alone
from tests.fixtures.scheduler import purge, ready_count
from tests.fixtures.worker import ROOT, wait_for

WORKER_APP = str(Path(sys.executable).parent / "worker-app")


def cli(
    *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [WORKER_APP, "queues", *args], cwd=ROOT, input=stdin, capture_output=True, text=True, timeout=120,
        check=False, env={**os.environ, **(env or {})},
    )  # fmt: skip


def report() -> dict[str, Any]:
    out = cli("--json")
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout))


def reports_depth(source: str, ready: int) -> dict[str, Any] | None:
    found = report()
    sync = next(q for q in found["queues"] if q["queue"] == "sync")
    return found if found["source"] == source and sync["ready"] == ready else None


def plugin(action: str) -> None:
    alone(f"{action} the RabbitMQ management plugin")
    done = subprocess.run(
        ["rabbitmq-plugins", action, "rabbitmq_management"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr


@pytest.fixture
def sync_queue(rabbitmq_vhost: str) -> str:
    import worker_app

    worker_app.broker.declare_queue("sync", ensure=True)
    purge("sync")
    return "sync"


@pytest.mark.exclusive  # disables the RabbitMQ management plugin every test uses
def test_depths_with_the_management_plugin_enabled_then_disabled(sync_queue: str) -> None:
    import worker_app

    actor = worker_app.broker.get_actor("heartbeat_sync")
    for _ in range(3):
        actor.send("n", 0)

    enabled = wait_for(lambda: reports_depth("management", 3), 30, "the management API to count 3")
    sync = next(q for q in enabled["queues"] if q["queue"] == "sync")
    assert sync["unacked"] == 0 and sync["consumers"] == 0 and sync["publish_rate"] is not None

    plugin("disable")
    try:
        disabled = report()
    finally:
        plugin("enable")
        wait_for(lambda: reports_depth("management", 3), 60, "the management API to come back")
    assert disabled["source"] == "amqp" and "management API unreachable" in disabled["note"]
    sync = next(q for q in disabled["queues"] if q["queue"] == "sync")
    assert (sync["ready"], sync["unacked"], sync["publish_rate"]) == (3, None, None)
    table = cli()
    assert "sync" in table.stdout and "source: management" in table.stderr


def test_purge_asks_first_and_touches_only_our_queues(sync_queue: str) -> None:
    import worker_app

    worker_app.broker.get_actor("heartbeat_sync").send("n", 0)
    declined = cli("purge", "sync", stdin="n\n")
    assert declined.returncode == 1 and ready_count("sync") == 1
    assert cli("purge", "sync", "--yes").stdout.strip() == "purged 1 message(s) from sync"
    assert ready_count("sync") == 0
    assert cli("purge", "sync", "--yes").stdout.strip() == "sync is empty"
    foreign = cli("purge", "celery", "--yes")
    assert foreign.returncode == 2 and "'celery' is not a queue of this app" in foreign.stderr


def test_queue_depth_metrics_for_prometheus(sync_queue: str) -> None:
    import worker_app
    from worker_app.queues import QueueDepthCollector
    from worker_app.runtime import get_runtime

    for _ in range(2):
        worker_app.broker.get_actor("heartbeat_sync").send("n", 0)
    collector = QueueDepthCollector(get_runtime().settings, ttl_s=0)

    def sync_ready() -> float | None:
        families = {f.name: f for f in collector.collect()}
        samples = {
            (s.labels["queue"], s.labels["state"]): s.value for s in families["cybervpn_queue_depth"].samples
        }
        return samples.get(("sync", "ready")) if samples.get(("sync", "ready")) == 2 else None

    assert wait_for(sync_ready, 30, "cybervpn_queue_depth{queue=sync,state=ready} == 2") == 2


def test_open_dead_letters_are_counted_beside_the_xq_and_unknown_while_postgresql_is_down(
    sync_queue: str, clean_tables: sa.Engine
) -> None:
    # Given sync with one open dead letter, one replayed and one discarded
    with clean_tables.begin() as conn:
        for status in ("dead", "replayed", "discarded"):
            conn.execute(
                sa.text("""INSERT INTO dead_letters (message_id, queue_name, reason, attempts,
                           first_failed_at, last_failed_at, status)
                           VALUES (:s, 'sync', 'failed', 1, now(), now(), :s)"""),
                {"s": status},
            )

    # Then the JSON and the table count the open one as DEAD, with the .XQ messages beside it
    sync = next(q for q in report()["queues"] if q["queue"] == "sync")
    assert sync["dead_letters"] == 1 and isinstance(sync["dead"], int)
    header, *rows = cli().stdout.splitlines()
    assert header.split()[4:6] == ["DEAD", "XQ"]
    assert next(r for r in rows if r.startswith("sync ")).split()[4] == "1"

    # And with PostgreSQL unreachable the depths still show, the dead-letter counts as unknown
    down = cli(env={"DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1:1/nowhere"})
    assert down.returncode == 0, down.stderr
    assert "open dead letters unknown (PostgreSQL: OperationalError)" in down.stderr
    assert next(r for r in down.stdout.splitlines() if r.startswith("sync ")).split()[4] == "?"


def test_a_quorum_queue_shows_its_type_leader_and_members(sync_queue: str) -> None:
    import pika

    from worker_app.config import get_settings
    from worker_app.queues import from_management

    settings = get_settings()
    name = "zz-quorum-probe"
    with pika.BlockingConnection(pika.URLParameters(settings.rabbitmq_urls[0])) as conn:
        channel = conn.channel()
        channel.queue_declare(name, durable=True, arguments={"x-queue-type": "quorum"})
        try:
            found = wait_for(lambda: from_management(settings, [name, "sync"]).queues, 30, "the queues")
        finally:
            channel.queue_delete(name)
    quorum, classic = found
    assert (quorum.queue_type, classic.queue_type) == ("quorum", "classic")
    assert quorum.leader and quorum.members == [quorum.leader] and quorum.online == [quorum.leader]
    assert classic.members is None
