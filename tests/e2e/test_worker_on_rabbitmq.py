"""Tier 3: the real worker process on the real RabbitMQ, PostgreSQL and Redis."""

from __future__ import annotations

import gzip
import http.server
import json
import os
import subprocess
import threading
import uuid
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote

import pika
import pytest
import redis
import requests
import sqlalchemy as sa

import worker_app
from tests import e2e_actors
from tests.fixtures.ports import free_port
from tests.fixtures.services import MANAGEMENT
from tests.fixtures.worker import DRAMATIQ, ROOT, run_worker, wait_for, wait_until_consuming
from worker_app.config import get_settings

pytestmark = pytest.mark.rabbitmq
TOKEN = "424242:test-only-secret-token"


def dead_letter(engine: sa.Engine, **where: Any) -> Any:
    clause = " AND ".join(f"{k} = :{k}" for k in where)
    with engine.connect() as conn:
        return conn.execute(sa.text(f"SELECT * FROM dead_letters WHERE {clause}"), where).first()


def ready_count(queue: str) -> int:
    params = pika.URLParameters(get_settings().rabbitmq_url.get_secret_value())
    with pika.BlockingConnection(params) as conn:
        return int(conn.channel().queue_declare(queue, passive=True).method.message_count)


@pytest.fixture
def e2e(rabbitmq_vhost: str, clean_tables: sa.Engine, redis_client: redis.Redis) -> sa.Engine:
    return clean_tables


def test_worker_consumes_every_domain_queue(e2e: sa.Engine, tmp_path: Path) -> None:
    # Given a worker started with no queue selection, When a heartbeat is sent through each domain
    # queue, Then each is answered (run_worker waits on exactly that and fails otherwise)
    with run_worker(tmp_path / "worker.log") as worker:
        assert worker.proc.poll() is None


def test_worker_with_queue_selection_consumes_only_those(e2e: sa.Engine, tmp_path: Path) -> None:
    from worker_app.heartbeat import ping
    from worker_app.runtime import get_runtime

    # Given a worker for two queues only
    with run_worker(tmp_path / "worker.log", queues=("notifications", "payments")):
        # When every domain is pinged
        answers = ping(
            worker_app.broker, get_runtime().redis, ["notifications", "payments", "sync"], timeout_s=3
        )
    # Then only the selected queues answer
    assert answers["notifications"] and answers["payments"]
    assert answers["sync"] is None


def test_permanent_and_transient_failures_end_recorded_dead(
    e2e: sa.Engine, redis_client: redis.Redis, tmp_path: Path
) -> None:
    # Given a running worker
    with run_worker(tmp_path / "worker.log"):
        # When one actor fails permanently and another transiently
        permanent = e2e_actors.e2e_permanent.send(42)
        transient = e2e_actors.e2e_transient.send("runs:transient")

        # Then the permanent one is dead after a single attempt, with its final traceback
        row = wait_for(lambda: dead_letter(e2e, message_id=permanent.message_id), 30, "permanent dead letter")
        assert (row.reason, row.attempts, row.queue_name) == ("permanent_error", 1, "payments")
        assert "invoice for payment 42 was never created" in row.traceback
        assert row.trace_id == permanent.options["trace_id"]

        # And the transient one ran 1 + analytics' 1 retry, then was recorded dead
        row = wait_for(lambda: dead_letter(e2e, message_id=transient.message_id), 30, "transient dead letter")
        assert (row.reason, row.attempts) == ("retries_exhausted", 2)
        assert redis_client.get("runs:transient") == "2"
        assert "panel answered 503" in row.traceback

    # And RabbitMQ still shows them as the .XQ depth
    assert ready_count("payments.XQ") >= 1
    assert ready_count("analytics.XQ") >= 1


def publish_raw(queue: str, body: bytes) -> None:
    params = pika.URLParameters(get_settings().rabbitmq_url.get_secret_value())
    with pika.BlockingConnection(params) as conn:
        conn.channel().basic_publish("", queue, body, pika.BasicProperties(delivery_mode=2))


def test_malformed_messages_are_recorded_dead_and_the_worker_keeps_running(
    e2e: sa.Engine, tmp_path: Path
) -> None:
    # Given a running worker
    with run_worker(tmp_path / "worker.log") as worker:
        # When three malformed messages are put straight on a queue
        publish_raw("analytics", b"\x00 this is not json")
        unknown = {
            "queue_name": "analytics",
            "actor_name": "no_such_actor",
            "args": [],
            "kwargs": {},
            "options": {},
            "message_id": str(uuid.uuid4()),
            "message_timestamp": 0,
        }
        publish_raw("analytics", json.dumps(unknown).encode())
        wrong = {**unknown, "actor_name": "e2e_transient", "args": [1, 2, 3], "message_id": str(uuid.uuid4())}
        publish_raw("analytics", json.dumps(wrong).encode())

        # Then each is recorded dead with a clear reason
        undecodable = wait_for(lambda: dead_letter(e2e, reason="undecodable"), 30, "undecodable dead letter")
        assert undecodable.raw_body == b"\x00 this is not json"
        assert "body is not a Dramatiq message" in undecodable.exception_message
        row = wait_for(lambda: dead_letter(e2e, message_id=unknown["message_id"]), 30, "unknown actor")
        assert row.reason == "unknown_actor" and "no_such_actor" in row.exception_message
        row = wait_for(lambda: dead_letter(e2e, message_id=wrong["message_id"]), 30, "wrong arguments")
        assert row.reason == "bad_message" and "arguments do not match e2e_transient" in row.exception_message

        # And the worker is still alive and consuming
        wait_until_consuming(worker, ["analytics"])
        assert worker.proc.poll() is None


def test_secrets_never_reach_logs_or_dead_letters(e2e: sa.Engine, tmp_path: Path) -> None:
    # Given a worker whose Telegram API is unreachable (the token sits in the URL path)
    env = {"TELEGRAM_API_URL": "http://127.0.0.1:9", "LOG_FORMAT": "json"}
    with run_worker(tmp_path / "worker.log", env=env) as worker:
        # When an actor's Telegram call fails with a connection error and ends dead
        message = e2e_actors.e2e_telegram_call.send()
        row = wait_for(lambda: dead_letter(e2e, message_id=message.message_id), 30, "telegram dead letter")

    # Then neither the traceback nor any log line contains the token
    assert "TelegramUnavailable" in row.exception_type
    assert TOKEN not in row.traceback and TOKEN not in (row.exception_message or "")
    log = worker.log()
    assert "/bot***/getMe" in log  # the failure was logged...
    assert TOKEN not in log  # ...without the token


def test_startup_with_a_bad_database_url_prints_one_clear_line_and_exits_non_zero(tmp_path: Path) -> None:
    # Given DATABASE_URL=nonsense, When the worker starts
    result = subprocess.run(
        [DRAMATIQ, "worker_app", "--path", str(ROOT), "-p", "2"],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": "nonsense"},
        capture_output=True,
        timeout=60,
        check=False,
    )
    # Then it exits non-zero with a line naming the variable
    output = (result.stdout + result.stderr).decode()
    assert result.returncode != 0
    assert output.count("invalid configuration: DATABASE_URL: expected a URL like postgresql") == 1
    assert "Traceback" not in output


def close_all_connections(vhost: str) -> int:
    """Force-close every AMQP connection of ``vhost`` through the management API."""
    api, auth = f"{MANAGEMENT}/api", ("guest", "guest")
    connections = requests.get(f"{api}/vhosts/{quote(vhost, safe='')}/connections", auth=auth, timeout=10)
    connections.raise_for_status()
    for conn in connections.json():
        requests.delete(f"{api}/connections/{quote(conn['name'], safe='')}", auth=auth, timeout=10)
    return len(connections.json())


def test_worker_and_producer_recover_when_rabbitmq_drops_their_connections(
    e2e: sa.Engine, rabbitmq_vhost: str, tmp_path: Path
) -> None:
    # Given a consuming worker and a producer that has published before
    with run_worker(tmp_path / "worker.log") as worker:
        # When RabbitMQ closes every connection of the vhost (consumers' and the producer's)
        wait_for(lambda: close_all_connections(rabbitmq_vhost) > 0, 30, "connections to close")

        # Then the producer publishes again and the worker consumes every queue again, on its own
        wait_until_consuming(worker, None)
        message = e2e_actors.e2e_permanent.send(7)
        row = wait_for(lambda: dead_letter(e2e, message_id=message.message_id), 60, "message after reconnect")
        assert row.reason == "permanent_error"
        assert worker.proc.poll() is None


class _SentryIntake(http.server.BaseHTTPRequestHandler):
    """Receives Sentry envelopes on loopback and keeps their decoded bodies."""

    received: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        self.received.append(body.decode(errors="replace"))
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_sentry_events_are_sent_without_secrets(e2e: sa.Engine, tmp_path: Path) -> None:
    # Given a worker reporting to a Sentry intake on loopback, with an unreachable Telegram
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SentryIntake)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {
        "SENTRY_DSN": f"http://public@127.0.0.1:{server.server_port}/1",
        "TELEGRAM_API_URL": "http://127.0.0.1:9",
    }
    try:
        with run_worker(tmp_path / "worker.log", env=env):
            # When an actor fails calling Telegram
            e2e_actors.e2e_telegram_call.send()

            # Then Sentry receives the error, with the token redacted everywhere in the event
            event = wait_for(
                lambda: next((b for b in _SentryIntake.received if "TelegramUnavailable" in b), None),
                60,
                "a Sentry event",
            )
    finally:
        server.shutdown()
        server.server_close()
    assert "bot***" in event
    assert TOKEN not in event


def test_metrics_of_every_worker_process_are_served_on_metrics_port(e2e: sa.Engine, tmp_path: Path) -> None:
    # Given a worker exposing metrics
    port = free_port()
    env = {"METRICS_PORT": str(port), "METRICS_DIR": str(tmp_path / "prom")}
    with run_worker(tmp_path / "worker.log", env=env):
        # When messages succeed and one dies
        e2e_actors.e2e_permanent.send(1)

        # Then the exposition shows processed, dead and time-in-queue series for them (the
        # per-message series are flushed once a second, the dead count at once)
        expected = (
            'dramatiq_messages_total{actor_name="heartbeat_analytics",queue_name="analytics"}',
            'dramatiq_message_dead_total{actor_name="e2e_permanent",queue_name="payments"} 1.0',
            "cybervpn_message_time_in_queue_seconds_count"
            '{actor_name="e2e_permanent",queue_name="payments"} 1.0',
        )

        def scrape() -> str | None:
            try:
                text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            except requests.ConnectionError:
                return None
            return text if all(line in text for line in expected) else None

        wait_for(scrape, 30, "the metrics endpoint to show the processed and the dead message")


def test_a_worker_given_several_nodes_skips_one_that_is_down(e2e: sa.Engine, tmp_path: Path) -> None:
    # Given RABBITMQ_URL naming first a node that is down, then the real one (a cluster's list)
    real = get_settings().rabbitmq_urls[0]
    down = real.replace("127.0.0.1:5672", f"127.0.0.1:{free_port()}")
    key = f"urls-{uuid.uuid4().hex[:8]}"
    with run_worker(tmp_path / "worker.log", env={"RABBITMQ_URL": f"{down},{real}"}, queues=("analytics",)):
        # When a message fails once (analytics: one retry, enqueued again by the worker itself)
        e2e_actors.e2e_transient.send(key)
        # Then the worker consumed it and published its retry through the node that is up
        redis_client = redis.Redis.from_url(os.environ["REDIS_URL"])
        wait_for(lambda: redis_client.get(key) == b"2", 60, "the message and its retry to run")
