"""The HTTP API over real PostgreSQL, Redis and RabbitMQ (Flask's test client; no mocks)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from flask.testing import FlaskClient

from tests.fixtures.api import WORKER_APP, serving
from tests.fixtures.notifications import MakeRuntime
from tests.fixtures.scheduler import purge, ready_count
from worker_app.api import check_serving, create_app
from worker_app.errors import ConfigurationError

TOKEN = "api-test-token-123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def client(make_runtime: MakeRuntime, rabbitmq_vhost: str) -> Iterator[FlaskClient]:
    import worker_app

    runtime = make_runtime(API_TOKEN=TOKEN)
    worker_app.broker.declare_queue("notifications", ensure=True)
    purge("notifications")
    yield create_app(runtime, worker_app.broker).test_client()


def jobs_count(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM jobs")).scalar_one())


def post_job(client: FlaskClient, payload: Any, headers: dict[str, str] | None = None) -> Any:
    return client.post("/api/v1/jobs", json=payload, headers=AUTH if headers is None else headers)


def test_a_job_is_accepted_tracked_and_enqueued(client: FlaskClient, clean_tables: sa.Engine) -> None:
    accepted = post_job(
        client, {"actor": "send_notification", "args": [42, "hi", "test"], "initiated_by": "admin:7"}
    )
    assert accepted.status_code == 202, accepted.json
    job_id = accepted.json["job_id"]
    shown = client.get(f"/api/v1/jobs/{job_id}", headers=AUTH)
    assert shown.status_code == 200
    assert (shown.json["status"], shown.json["actor_name"], shown.json["initiated_by"]) == (
        "queued", "send_notification", "admin:7",
    )  # fmt: skip
    assert ready_count("notifications") == 1


@pytest.mark.parametrize(
    ("payload", "headers", "status", "reason"),
    [
        ({"actor": "send_notification", "args": [1, "x", "t"]}, {}, 401, "missing or wrong bearer token"),
        ({"actor": "send_notification", "args": [1, "x", "t"]}, {"Authorization": "Bearer no"}, 401, "wrong"),
        ({"actor": "no_such_actor"}, None, 404, "unknown actor 'no_such_actor' (callable: send_notification"),
        ({"actor": "process_notification_queue"}, None, 404, "unknown actor 'process_notification_queue'"),
        ({"actor": "send_notification", "args": ["abc", "x", "t"]}, None, 422,
         "send_notification: telegram_id = 'abc': Input should be a valid integer"),
        ({"actor": "send_notification", "args": [1]}, None, 422, "missing a required argument: 'message'"),
        ({"actor": "send_notification", "kwargs": {"telegram_id": 1, "message": "x", "nope": 1,
          "notification_type": "t"}}, None, 422, "unexpected keyword argument 'nope'"),
        ({"actor": "send_notification", "args": "1"}, None, 400, "args must be a JSON array"),
        ([1, 2], None, 400, "expected a JSON object body"),
    ],
)  # fmt: skip
def test_bad_requests_get_a_status_and_one_line_and_enqueue_nothing(
    client: FlaskClient, clean_tables: sa.Engine, payload: Any, headers: Any, status: int, reason: str
) -> None:
    answer = post_job(client, payload, headers)
    assert answer.status_code == status
    assert reason in answer.json["error"] and "\n" not in answer.json["error"]
    assert jobs_count(clean_tables) == 0
    assert ready_count("notifications") == 0


def test_unknown_ids_are_404(client: FlaskClient) -> None:
    assert client.get("/api/v1/jobs/nope", headers=AUTH).status_code == 404
    missing = client.get("/api/v1/dead-letters/999999", headers=AUTH)
    assert missing.status_code == 404 and missing.json["error"] == "no dead letter with id 999999"
    assert client.get("/api/v1/nowhere", headers=AUTH).json == {"error": "404 Not Found"}


def test_dead_letters_listed_shown_replayed_and_discarded(
    client: FlaskClient, clean_tables: sa.Engine
) -> None:
    with clean_tables.begin() as conn:
        ids = [
            conn.execute(
                sa.text("""INSERT INTO dead_letters (message_id, queue_name, actor_name, args, kwargs,
                           options,
                           reason, exception_type, exception_message, traceback, attempts, first_failed_at,
                           last_failed_at) VALUES (:m, 'notifications', 'send_notification', '[5, "x", "t"]',
                           '{}', '{"trace_id": "t-api"}', 'retries_exhausted', 'UpstreamUnavailable', 'down',
                           'Traceback: down', 4, now(), now()) RETURNING id"""),
                {"m": m},
            ).scalar_one()
            for m in ("api-1", "api-2")
        ]
    listed = client.get("/api/v1/dead-letters?error=down&queue=notifications", headers=AUTH)
    assert listed.json["total"] == 2 and "traceback" not in listed.json["items"][0]
    assert client.get(f"/api/v1/dead-letters/{ids[0]}", headers=AUTH).json["traceback"] == "Traceback: down"
    bad = client.get("/api/v1/dead-letters?since=yesterday", headers=AUTH)
    assert bad.status_code == 400 and bad.json["error"] == "since: 'yesterday' is not an ISO time"
    unselected = client.post("/api/v1/dead-letters/replay", json={}, headers=AUTH)
    assert unselected.status_code == 400 and ready_count("notifications") == 0
    replayed = client.post("/api/v1/dead-letters/replay", json={"ids": [ids[0]]}, headers=AUTH)
    assert (replayed.json["matched"], replayed.json["replayed"]) == (1, 1)
    assert ready_count("notifications") == 1
    assert client.post("/api/v1/dead-letters/discard", json={"ids": [ids[1]]}, headers=AUTH).json == {
        "discarded": 1
    }
    assert client.get("/api/v1/dead-letters", headers=AUTH).json["total"] == 0


def test_health_readiness_queues_and_openapi(client: FlaskClient) -> None:
    assert client.get("/healthz").json == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json["checks"] == {
        "postgresql": "ok",
        "redis": "ok",
        "rabbitmq": "ok",
    }
    assert client.get("/api/v1/queues").status_code == 401
    queues = client.get("/api/v1/queues", headers=AUTH).json
    assert {q["queue"] for q in queues["queues"]} >= {"notifications", "bulk"}
    spec = client.get("/api/v1/openapi.json").json
    assert spec["openapi"].startswith("3.") and "/api/v1/jobs" in spec["paths"]


def test_no_token_serves_only_on_loopback() -> None:
    check_serving("127.0.0.1", token_set=False)
    check_serving("::1", token_set=False)
    check_serving("0.0.0.0", token_set=True)
    with pytest.raises(ConfigurationError, match=r"API_TOKEN is not set: .* not on '0\.0\.0\.0'"):
        check_serving("0.0.0.0", token_set=False)


def test_serve_as_a_user_runs_it(rabbitmq_vhost: str, migrated_database: str, tmp_path: Path) -> None:
    refused = subprocess.run(
        [WORKER_APP, "serve", "--host", "0.0.0.0"], capture_output=True, text=True, timeout=60, check=False
    )
    assert refused.returncode == 1 and "API_TOKEN is not set" in refused.stderr

    with serving(tmp_path / "serve.log", {"API_TOKEN": TOKEN}) as base:
        assert requests.get(f"{base}/healthz", timeout=10).json() == {"status": "ok"}
        assert requests.get(f"{base}/api/v1/queues", timeout=10).status_code == 401
        assert requests.get(f"{base}/api/v1/queues", headers=AUTH, timeout=10).status_code == 200
