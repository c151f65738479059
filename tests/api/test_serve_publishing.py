"""``worker-app serve`` publishes on a few long-lived AMQP connections, however many requests come.

werkzeug runs each HTTP connection on a new thread, and Dramatiq keeps one AMQP connection per
thread and never lets go of it: before :mod:`worker_app.publishing`, every request that enqueued
left one more connection open on RabbitMQ (a burst of 2,000 webhooks stalled). Read from RabbitMQ
itself (``rabbitmqctl list_connections``), on the real broker, with a real ``serve``.
"""

from __future__ import annotations

import contextvars
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
import sqlalchemy as sa

from tests.fixtures.api import serving
from tests.fixtures.services import queue_depth
from tests.fixtures.worker import wait_for
from worker_app.publishing import PublisherThreads, PublishTimeout

TOKEN = "api-test-token-123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def connections(vhost: str) -> set[str]:
    """The names (client address -> server address) of the AMQP connections open on ``vhost`` now."""
    done = subprocess.run(["rabbitmqctl", "list_connections", "name", "vhost", "--silent"],
                          capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    rows = [line.rsplit("\t", 1) for line in done.stdout.splitlines() if "\t" in line]
    return {name for name, on in rows if on == vhost}


def test_a_burst_of_requests_publishes_on_the_publisher_threads_connections_kept_alive_when_idle(
    rabbitmq_vhost: str, clean_tables: sa.Engine, tmp_path: Path
) -> None:
    env = {"API_TOKEN": TOKEN, "API_PUBLISHER_THREADS": "2",
           "RABBITMQ_URL": os.environ["RABBITMQ_URL"] + "?heartbeat=2"}  # fmt: skip
    job = {"actor": "send_notification", "args": [42, "hi", "test"]}
    before = connections(rabbitmq_vhost)  # this test process's own, from earlier tests
    with serving(tmp_path / "serve.log", env) as base:
        # 30 jobs, each on a new HTTP connection (so a new server thread), 3 at a time
        def post(_: int) -> int:
            return requests.post(f"{base}/api/v1/jobs", json=job, headers=AUTH, timeout=30).status_code

        with ThreadPoolExecutor(3) as pool:
            assert list(pool.map(post, range(30))) == [202] * 30
        wait_for(lambda: queue_depth(rabbitmq_vhost, "notifications") == 30, 30, "30 messages on the queue")
        burst = connections(rabbitmq_vhost) - before
        assert 1 <= len(burst) <= 2, burst

        # Idle for three heartbeat intervals: the same connections stay up and publish again
        idle_from = time.monotonic()
        wait_for(lambda: time.monotonic() > idle_from + 6 and connections(rabbitmq_vhost) - before == burst,
                 30, "six idle seconds with the same connections")  # fmt: skip
        assert post(0) == 202
        assert connections(rabbitmq_vhost) - before == burst
    log = (tmp_path / "serve.log").read_text()
    assert "connection lost" not in log and "Traceback" not in log, log[-3000:]


@pytest.fixture
def publisher() -> Iterator[PublisherThreads]:
    # run() semantics only: nothing here publishes, so the broker is never asked for a connection
    threads = PublisherThreads(SimpleNamespace(state=threading.local()), threads=1, timeout_s=0.5)
    yield threads
    threads.close()


def test_run_carries_the_callers_context_and_its_errors(publisher: PublisherThreads) -> None:
    trace: contextvars.ContextVar[str] = contextvars.ContextVar("trace", default="none")
    trace.set("t-42")
    assert publisher.run(lambda: (trace.get(), threading.current_thread().name)) == ("t-42", "publisher-0")
    with pytest.raises(ZeroDivisionError):
        publisher.run(lambda: 1 / 0)
    # from a publisher thread it runs in place (no deadlock waiting on itself)
    assert publisher.run(lambda: publisher.run(lambda: "nested")) == "nested"


def test_a_publish_not_done_in_time_is_a_timeout_saying_whether_it_may_still_happen(
    publisher: PublisherThreads,
) -> None:
    release, running = threading.Event(), threading.Event()
    first: list[BaseException] = []

    def block() -> None:
        running.set()
        release.wait(10)

    def hold() -> None:
        try:
            publisher.run(block)
        except PublishTimeout as e:
            first.append(e)

    blocked = threading.Thread(target=hold, daemon=True)
    blocked.start()
    assert running.wait(10), "the publisher thread runs the blocking publish"
    ran: list[str] = []
    try:
        with pytest.raises(PublishTimeout, match=r"within 0.5 s \(it was not published\)"):
            publisher.run(lambda: ran.append("late"))  # queued behind the blocked one
        wait_for(lambda: first, 10, "the blocked publish's own timeout")
    finally:
        release.set()
        blocked.join(10)
    assert publisher.run(lambda: "next") == "next" and ran == []  # the cancelled one never ran
    assert [str(e) for e in first] == [
        "RabbitMQ did not confirm a publish within 0.5 s (it may still be published)"
    ]
