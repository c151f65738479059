"""The dashboard's landing page (Overview): its tiles say what is wrong and link to where, and the
per-actor table sorts and shows each actor's last error. Flask's test client over real Redis,
PostgreSQL and RabbitMQ."""

from __future__ import annotations

import html
import re
import time
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
import redis
from flask.testing import FlaskClient

from tests.api.test_telemetry_api import actor_row, telemetry_app
from tests.fixtures.notifications import MakeRuntime
from worker_app.clients.breaker import BreakerConfig, CircuitBreaker
from worker_app.middleware.telemetry import Aggregator
from worker_app.open_alerts import OpenAlert, OpenAlerts
from worker_app.telemetry import duration_bucket
from worker_app.workers import INDEX_KEY, WorkerHeartbeats


@pytest.fixture
def dashboard(make_runtime: MakeRuntime, no_leftover_messages: None) -> Iterator[FlaskClient]:
    yield telemetry_app(make_runtime()).test_client()


def tile(page: str, key: str) -> tuple[str, str]:
    """The tile's class attribute and its value's text."""
    found = re.search(rf'<div id="tile-{key}" class="([^"]*)"', page)
    assert found is not None, f"no tile {key!r} in the page"
    value = re.search(r'<div class="value">(.*?)</div>', page[found.start() :], re.S)
    assert value is not None
    return found.group(1), html.unescape(re.sub(r"<[^>]+>", "", value.group(1))).strip()


def ended(client: redis.Redis, actor: str, kind: str, n: int = 1, error: str | None = None) -> None:
    agg = Aggregator(client)
    key = (int(time.time() // 60), actor)
    for _ in range(n):
        agg.started(key)
        agg.ended(key, kind, duration_bucket(20.0))
    if error:
        agg.last_errors[actor] = (time.time(), error)
    assert agg.flush()


def beat(client: redis.Redis) -> WorkerHeartbeats:
    """One worker process's heartbeat, as ``dramatiq worker_app`` writes it (the worker object only
    names its queues and threads)."""
    heartbeats = WorkerHeartbeats(client)
    heartbeats._worker = SimpleNamespace(consumer_whitelist={"sync", "notifications"}, worker_threads=4)
    heartbeats.beat()
    return heartbeats


def test_a_healthy_quiet_fleet_shows_no_trouble_but_what_is_missing(
    dashboard: FlaskClient, redis_client: redis.Redis
) -> None:
    # Given one worker beating, nothing failed, no alert, and no scheduler running
    redis_client.delete(INDEX_KEY)
    beat(redis_client)

    page = dashboard.get("/queues").text

    # Then the tiles say so: one worker, nothing failed or open, and no scheduler leader (red)
    assert tile(page, "workers") == ("tile", "1")
    assert tile(page, "alerts") == ("tile", "0")
    assert tile(page, "failed") == ("tile", "0")
    assert tile(page, "leader") == ("tile trouble", "none")
    assert 'href="/schedules"' in page and "no scheduler is running" in page


def test_trouble_turns_its_tiles_red_and_links_to_it(
    dashboard: FlaskClient, redis_client: redis.Redis
) -> None:
    # Given no worker, an open alert, a message failed for good, and a Telegram breaker open
    redis_client.delete(INDEX_KEY)
    now = time.time()
    OpenAlerts(redis_client).open(
        OpenAlert("monitoring.node_offline.n1", "critical", "Node de-1 offline", now, now, "test")
    )
    ended(redis_client, "tele_overview_doomed", "failed", error="UpstreamUnavailable: panel answered 502")
    breaker = CircuitBreaker(BreakerConfig(failures=1), service="telegram")
    breaker.record_failure("timeout")
    assert breaker.state == "open"

    page = dashboard.get("/queues").text

    assert tile(page, "workers") == ("tile trouble", "0")
    assert tile(page, "alerts") == ("tile trouble", "1") and "Node de-1 offline" in page
    assert tile(page, "failed") == ("tile trouble", "1")
    assert re.search(r'id="tile-alerts".*?<a href="/alerts">1</a>', page, re.S)

    # And once a worker beats with that breaker open, the breaker's tile is red
    beat(redis_client)
    page = dashboard.get("/queues").text
    assert tile(page, "telegram-breaker") == ("tile trouble", "open")
    assert "1 of 1 workers" in page
    OpenAlerts(redis_client).close("monitoring.node_offline.n1", time.time())


def test_the_actor_table_sorts_by_a_column_and_shows_each_actors_last_error(
    dashboard: FlaskClient, redis_client: redis.Redis
) -> None:
    # Given a busy actor that never fails and a quiet one that failed
    ended(redis_client, "tele_sort_busy", "completed", n=5)
    ended(redis_client, "tele_sort_quiet", "retried", error="UpstreamUnavailable: panel answered 502")

    # When the table is sorted by actor (the default), by started and by failure rate
    by_name = dashboard.get("/queues").text
    by_started = dashboard.get("/queues", query_string={"sort": "started"}).text
    by_rate = dashboard.get("/queues", query_string={"sort": "failure_rate"}).text

    def order(page: str) -> list[str]:
        return [a for a in re.findall(r'<tr id="actor-([^"]+)"', page) if a.startswith("tele_sort_")]

    assert order(by_name) == ["tele_sort_busy", "tele_sort_quiet"]
    assert order(by_started) == ["tele_sort_busy", "tele_sort_quiet"]
    assert order(by_rate) == ["tele_sort_quiet", "tele_sort_busy"]
    assert "<strong>Failure rate ▾</strong>" in by_rate
    # And the quiet actor's row has its failure rate and its last error, linking to its failures
    row = actor_row(by_rate, "tele_sort_quiet")
    assert '<td class="failure-rate">100 %</td>' in row
    assert "UpstreamUnavailable: panel answered 502" in row
    assert "/jobs?q=tele_sort_quiet" in html.unescape(row)
    assert '<td class="last-error">-</td>' in actor_row(by_rate, "tele_sort_busy")
    # And a column that does not exist is refused, naming the choices
    refused = dashboard.get("/queues", query_string={"sort": "color"})
    assert refused.status_code == 400 and "sort: expected one of" in refused.text


def test_a_paused_queue_with_messages_and_no_consumer_is_not_stalled() -> None:
    from worker_app.queues import QueueDepth
    from worker_app.web.overview import stalled

    def depth(queue: str, ready: int, consumers: int) -> QueueDepth:
        return QueueDepth(queue, ready, 0, 0, 0, consumers, None, None)

    assert stalled(depth("payments", 3, 0))
    assert not stalled(depth("payments", 3, 0), paused={"payments"})
    assert not stalled(depth("payments", 3, 1)) and not stalled(depth("payments", 0, 0))
    assert not stalled(depth("payments.XQ", 3, 0))  # not a domain queue
