"""``GET /api/v1/telemetry/summary`` and the dashboard's per-actor table, through Flask's test client
over the real Redis (counts written by the same flush the workers use)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from flask_openapi3.openapi import OpenAPI

from tests.fixtures.notifications import MakeRuntime, unreachable_redis_url
from worker_app.middleware.telemetry import Aggregator
from worker_app.runtime import Runtime
from worker_app.telemetry import duration_bucket
from worker_app.web.api import create_app
from worker_app.web.telemetry import PATH, add_telemetry_routes

TOKEN = "tele-token-789"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


def telemetry_app(runtime: Runtime) -> Flask:
    """The API app with the telemetry route (added here until ``create_app`` adds it itself)."""
    import worker_app

    app = create_app(runtime, worker_app.broker)
    assert isinstance(app, OpenAPI)
    if not any(rule.rule == PATH for rule in app.url_map.iter_rules()):
        add_telemetry_routes(app, runtime)
    return app


@pytest.fixture
def client(make_runtime: MakeRuntime) -> Iterator[FlaskClient]:
    yield telemetry_app(make_runtime(API_TOKEN=TOKEN)).test_client()


def record(client: redis.Redis, ago_min: int, actor: str, kind: str, duration_ms: float, n: int = 1) -> None:
    """``n`` attempts of ``actor`` ended as ``kind`` ``ago_min`` minutes ago, flushed as a worker does."""
    agg = Aggregator(client)
    key = (int(time.time() // 60) - ago_min, actor)
    for _ in range(n):
        agg.started(key)
        agg.ended(key, kind, duration_bucket(duration_ms))
    assert agg.flush()


def test_the_summary_has_every_window_with_counts_percentiles_and_totals(
    client: FlaskClient, redis_client: redis.Redis
) -> None:
    # Given completions and a retry this minute, and a failure 30 minutes ago
    record(redis_client, 0, "sync_users", "completed", 40.0, n=3)
    record(redis_client, 0, "send_notification", "retried", 2.0)
    record(redis_client, 30, "sync_users", "failed", 900.0)

    # When the summary is asked for
    answer = client.get(PATH, headers=BEARER)

    # Then each window has its actors' counts and percentiles, and the totals over them
    assert answer.status_code == 200, answer.json
    body = answer.json
    assert body is not None and set(body["windows"]) == {"5m", "1h", "24h"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", body["generated_at"])
    five, hour = body["windows"]["5m"], body["windows"]["1h"]
    users = five["actors"]["sync_users"]
    assert (users["started"], users["completed"], users["failed"], users["retried"]) == (3, 3, 0, 0)
    assert 40 / 1.19 <= users["p50_ms"] <= 40 * 1.19 and 40 / 1.19 <= users["p95_ms"] <= 40 * 1.19
    assert five["actors"]["send_notification"]["retried"] == 1
    assert five["totals"]["started"] == 4 and five["bucket_s"] == 60
    assert hour["actors"]["sync_users"]["failed"] == 1 and hour["totals"]["started"] == 5
    assert 900 / 1.19 <= hour["actors"]["sync_users"]["p95_ms"] <= 900 * 1.19
    assert body["windows"]["24h"]["totals"]["completed"] == 3 and body["windows"]["24h"]["bucket_s"] == 3600


def test_one_window_can_be_asked_for_and_an_empty_one_has_no_percentiles(
    client: FlaskClient, redis_client: redis.Redis
) -> None:
    answer = client.get(PATH, query_string={"window": "1h"}, headers=BEARER)
    assert answer.status_code == 200 and answer.json is not None
    assert list(answer.json["windows"]) == ["1h"]
    empty = answer.json["windows"]["1h"]
    assert empty["actors"] == {}
    assert empty["totals"] == {"started": 0, "completed": 0, "failed": 0, "retried": 0, "p50_ms": None,
                               "p95_ms": None, "wait_p95_ms": None}  # fmt: skip


def test_the_token_and_the_window_are_checked(client: FlaskClient, redis_client: redis.Redis) -> None:
    assert client.get(PATH).status_code == 401
    bad = client.get(PATH, query_string={"window": "2d"}, headers=BEARER)
    assert bad.status_code == 422 and bad.json is not None and bad.json["error"].startswith("window")
    assert client.get(PATH, query_string={"windw": "1h"}, headers=BEARER).status_code == 422


def test_the_openapi_document_describes_the_summary_under_bearer_auth(client: FlaskClient) -> None:
    document = client.get("/api/v1/openapi.json").json
    assert document is not None
    route = document["paths"][PATH]["get"]
    assert route["security"] == [{"bearer": []}]
    assert {"200", "401", "422", "503"} <= set(route["responses"])
    assert [p["name"] for p in route["parameters"]] == ["window"]
    schemas = document["components"]["schemas"]
    assert {"TelemetrySummary", "WindowTelemetry", "ActorTelemetry"} <= set(schemas)
    assert set(schemas["ActorTelemetry"]["properties"]) == {
        "started", "completed", "failed", "retried", "p50_ms", "p95_ms", "wait_p95_ms",
    }  # fmt: skip


def test_redis_unreachable_is_a_503_naming_it(make_runtime: MakeRuntime) -> None:
    client = telemetry_app(make_runtime(API_TOKEN=TOKEN, REDIS_URL=unreachable_redis_url())).test_client()
    answer = client.get(PATH, headers=BEARER)
    assert answer.status_code == 503 and answer.json is not None
    assert answer.json["error"] == "Redis is unavailable"


# The dashboard's landing page (Queues) shows the same figures


@pytest.fixture
def dashboard(make_runtime: MakeRuntime, no_leftover_messages: None) -> Iterator[FlaskClient]:
    """The dashboard without a token (as on loopback): no login needed."""
    yield telemetry_app(make_runtime()).test_client()


def actor_row(page: str, actor: str) -> str:
    row = re.search(rf'<tr id="actor-{actor}"[^>]*>(.*?)</tr>', page, re.S)
    assert row is not None, page
    return row.group(1)


def test_the_landing_page_shows_each_actors_figures_for_the_chosen_window(
    dashboard: FlaskClient, redis_client: redis.Redis
) -> None:
    # Given a completion now and a failure 30 minutes ago
    record(redis_client, 0, "sync_users", "completed", 40.0)
    record(redis_client, 30, "sync_users", "failed", 900.0)

    # When the landing page is shown, by default (the last 5 minutes) and for the last hour
    landing = dashboard.get("/", follow_redirects=True)
    hour = dashboard.get("/queues", query_string={"window": "1h"})

    # Then the table has the window's counts, and links to the other windows
    assert landing.status_code == 200 and hour.status_code == 200
    row = actor_row(landing.text, "sync_users")
    assert '<td class="completed">1</td>' in row and '<td class="failed">0</td>' in row
    assert '<a href="/queues?window=1h">1h</a>' in landing.text
    assert re.search(r'<td class="failed"><a href="/dead-letters\?actor=sync_users">1</a></td>',
                     actor_row(hour.text, "sync_users"))  # fmt: skip
    assert re.search(r'<tr id="actor-sync_users" class="trouble">', hour.text)
    assert '<td class="started">2</td>' in actor_row(hour.text, "sync_users")
    assert "<strong>1h</strong>" in hour.text
    assert dashboard.get("/queues", query_string={"window": "7d"}).status_code == 400


def test_the_landing_page_still_renders_while_redis_is_down(
    make_runtime: MakeRuntime, no_leftover_messages: None
) -> None:
    page = telemetry_app(make_runtime(REDIS_URL=unreachable_redis_url())).test_client().get("/queues")
    assert page.status_code == 200
    assert re.search(r'id="telemetry-error">Telemetry unavailable: Redis is unreachable', page.text)
    assert re.search(r'id="depth-error">Queue depth history unavailable: Redis is unreachable', page.text)
    assert '<table id="queues">' in page.text


def chart_points(page: str, series: str) -> list[tuple[float, float]]:
    found = re.search(rf'<polyline class="series" data-series="{series}"[^>]* points="([^"]+)"', page)
    assert found is not None, page
    return [(float(x), float(y)) for x, y in (p.split(",") for p in found.group(1).split())]


def test_the_landing_page_charts_attempts_per_minute_and_per_hour_with_a_strict_csp(
    dashboard: FlaskClient, redis_client: redis.Redis
) -> None:
    # Given 4 completions and a failure this minute, and 2 retries 30 minutes ago
    record(redis_client, 0, "sync_users", "completed", 40.0, n=4)
    record(redis_client, 0, "sync_users", "failed", 900.0)
    record(redis_client, 30, "send_notification", "retried", 2.0, n=2)

    # When the landing page is shown
    page = dashboard.get("/queues")

    # Then its chart has one point a minute for the hour, the largest on top, the last minute's
    # completions at the peak and its failure a quarter of the way up
    assert page.status_code == 200 and '<svg id="throughput-chart"' in page.text
    completed, retried, failed = (chart_points(page.text, s) for s in ("completed", "retried", "failed"))
    assert len(completed) == len(retried) == len(failed) == 60
    bottom = max(y for _x, y in completed)  # the zero line
    peak = min(range(60), key=lambda n: completed[n][1])  # the minute of the 4 completions
    top = completed[peak][1]
    assert top < bottom and peak >= 58  # the last minute (the one before if the clock turned since)
    assert failed[peak][1] == bottom - (bottom - top) / 4
    assert min(y for _x, y in retried) == bottom - (bottom - top) / 2  # the 2 retries, 30 min back
    assert "completed (4)" in page.text and "retried (2)" in page.text and "failed (1)" in page.text
    assert "minute over the last hour" in page.text
    # And the 24 h window charts hours instead
    day = dashboard.get("/queues", query_string={"window": "24h"})
    assert len(chart_points(day.text, "completed")) == 24 and "hour over the last 24 h" in day.text

    # And the page may load nothing from anywhere but this server, and no inline script: its one
    # script is the dashboard's own file, which the server serves
    policy = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
    assert "script-src 'self';" in policy and "unsafe-inline" not in policy.split("style-src")[0]
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", page.text, re.S)
    assert scripts == [(' src="/dashboard-static/moments.js" defer', "")], scripts
    with dashboard.get("/dashboard-static/moments.js") as served:
        assert served.status_code == 200 and b"Intl.DateTimeFormat" in served.data
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page.text)
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    missing = dashboard.get("/jobs/no-such-job")  # an error page of the dashboard too
    assert missing.status_code == 404 and missing.headers["Content-Security-Policy"] == policy


def test_the_landing_page_charts_queue_depths_and_a_sparkline_per_queue(
    dashboard: FlaskClient, redis_client: redis.Redis
) -> None:
    from worker_app import queue_history
    from worker_app.queues import QueueDepth, QueueReport

    # Before any sample, the page says where samples come from
    assert 'id="depth-none"' in dashboard.get("/queues").text

    # Given samples 10 minutes ago and now: sync had 8 ready + 2 delayed, then 1 ready and 4 dead
    now = time.time()
    for ago_min, ready, delayed, dead in ((10, 8, 2, 0), (0, 1, 0, 4)):
        report = QueueReport("amqp", None, [QueueDepth("sync", ready, None, delayed, dead, 1, None, None)])
        queue_history.record(redis_client, report, now - 60 * ago_min)

    # When the landing page is shown
    page = dashboard.get("/queues").text

    # Then the depth chart has a point a minute, 10 at its peak 10 minutes ago, and the sync row a sparkline
    assert '<svg id="depth-chart"' in page and "ready (now 1)" in page and "dead (now 4)" in page
    ready = chart_points(page, "ready")
    # (until this minute is sampled the hour ends at the minute before, so the clock turning since
    # the samples were written moves nothing)
    assert len(ready) == 60 and min(range(60), key=lambda n: ready[n][1]) == 60 - 11
    row = re.search(r'<tr id="queue-sync">(.*?)</tr>', page, re.S)
    assert row is not None and 'class="sparkline"' in row.group(1)
    assert "sync: ready + delayed, per minute over the last hour (latest 1)" in row.group(1)
