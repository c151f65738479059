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

from tests.fixtures.api import WORKER_APP, api_client, serving
from tests.fixtures.notifications import MakeRuntime
from tests.fixtures.scheduler import ready_count
from worker_app.errors import ConfigurationError
from worker_app.web.api import check_serving, create_app

TOKEN = "api-test-token-123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def client(make_runtime: MakeRuntime, no_leftover_messages: None) -> Iterator[FlaskClient]:
    yield api_client(make_runtime, TOKEN, "notifications")


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
        ({"actor": "send_notification", "args": "1"}, None, 422, "args: Input should be a valid list"),
        ([1, 2], None, 422, "body: Input should be a valid dictionary"),
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
    assert client.get("/api/v1/nowhere", headers=AUTH).json == {"error": "404 Not Found", "detail": None}


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
    assert bad.status_code == 422 and bad.json["error"].startswith("since: 'yesterday' is not an ISO time")
    unselected = client.post("/api/v1/dead-letters/replay", json={}, headers=AUTH)
    assert unselected.status_code == 422 and ready_count("notifications") == 0
    assert unselected.json["error"] == 'body: name "ids" or a filter, or pass "all": true'
    replayed = client.post("/api/v1/dead-letters/replay", json={"ids": [ids[0]]}, headers=AUTH)
    assert (replayed.json["matched"], replayed.json["replayed"]) == (1, 1)
    assert ready_count("notifications") == 1
    assert client.post("/api/v1/dead-letters/discard", json={"ids": [ids[1]]}, headers=AUTH).json == {
        "discarded": 1
    }
    assert client.get("/api/v1/dead-letters", headers=AUTH).json["total"] == 0


def test_dead_letters_are_searched_and_a_search_is_discarded(
    client: FlaskClient, clean_tables: sa.Engine
) -> None:
    with clean_tables.begin() as conn:
        for message_id, kwargs in (
            ("q-1", '{"email": "Ann@Example.com"}'),
            ("q-2", '{"email": "bob@x.org"}'),
        ):
            conn.execute(
                sa.text("""INSERT INTO dead_letters (message_id, queue_name, actor_name, args, kwargs, reason,
                           first_failed_at, last_failed_at)
                           VALUES (:m, 'sync', 'sync_user', '[]', CAST(:k AS jsonb), 'failed', now(),
                           now())"""),
                {"m": message_id, "k": kwargs},
            )
    found = client.get("/api/v1/dead-letters?q=ann@example", headers=AUTH).json
    assert found["total"] == 1 and found["items"][0]["message_id"] == "q-1"
    assert client.get("/api/v1/dead-letters?q=SYNC_USER", headers=AUTH).json["total"] == 2
    assert (
        client.get("/api/v1/dead-letters?q=%00", headers=AUTH)
        .json["error"]
        .startswith("q: must not contain NUL")
    )
    discarded = client.post("/api/v1/dead-letters/discard", json={"q": "bob@"}, headers=AUTH)
    assert discarded.json == {"discarded": 1}
    assert [i["message_id"] for i in client.get("/api/v1/dead-letters", headers=AUTH).json["items"]] == [
        "q-1"
    ]
    document = client.get("/api/v1/openapi.json").json
    listing = document["paths"]["/api/v1/dead-letters"]["get"]["parameters"]
    assert "arguments" in next(p for p in listing if p["name"] == "q")["description"]
    assert "q" in document["components"]["schemas"]["Selection"]["properties"]


def test_health_readiness_queues_and_openapi(client: FlaskClient) -> None:
    assert client.get("/healthz").json == {"status": "ok"}
    ready = client.get("/readyz")
    client.application.extensions["health"].stop()  # its checker thread would outlive the test's vhost
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


def test_the_document_describes_each_callable_actors_arguments(client: FlaskClient) -> None:
    spec = client.get("/api/v1/openapi.json").json
    body = spec["paths"]["/api/v1/jobs"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    request = spec["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]]
    variants = {v["title"]: v["properties"] for v in request["oneOf"]}
    assert {"send_notification", "broadcast_message"} <= set(variants)
    send = variants["send_notification"]["kwargs"]["properties"]
    assert send["telegram_id"]["maximum"] == 2**63 - 1 and send["message"]["maxLength"] == 32768
    assert variants["broadcast_message"]["kwargs"]["properties"]["telegram_ids"]["minItems"] == 1
    described = [title for title in variants if title != "any other actor (404)"]
    assert variants["any other actor (404)"]["actor"]["not"]["enum"] == described
    assert described[:4] == ["send_notification", "broadcast_message", "execute_bulk_user_operation",
                             "execute_bulk_broadcast"]  # fmt: skip


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
    assert refused.returncode == 2 and "API_TOKEN is not set" in refused.stderr

    with serving(tmp_path / "serve.log", {"API_TOKEN": TOKEN}) as base:
        assert requests.get(f"{base}/healthz", timeout=10).json() == {"status": "ok"}
        assert requests.get(f"{base}/api/v1/queues", timeout=10).status_code == 401
        assert requests.get(f"{base}/api/v1/queues", headers=AUTH, timeout=10).status_code == 200


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"actor": "send_notification", "args": [42, "", "t"]}, "message = '': String should have"),
        ({"actor": "send_notification", "args": [42, "x" * 4097, "t"]}, "Telegram allows 4096"),
        ({"actor": "send_notification", "args": [42, "hi", "t", "XML"]}, "parse_mode = 'XML': Input"),
        ({"actor": "send_notification", "args": [2**64, "hi", "t"]}, "telegram_id = 18446744073709551616"),
        ({"actor": "send_notification", "args": [42, "a\u0000b", "t"]}, "must not contain NUL"),
        ({"actor": "send_notification", "args": [42, "hi", "t"], "initiated_by": {"a": 1}},
         "initiated_by: Input should be a valid string"),
        ({"actor": "send_notification", "args": [42, "hi", "t"], "initiated_by": "x\u0000"},
         "initiated_by: must not contain NUL"),
        ({"actor": "send_notification", "kwargs": {"telegram_id": 1, "message": "hi\u0000",
          "notification_type": "t"}}, "kwargs.message: must not contain NUL"),
        ({"actor": "broadcast_message", "args": [[], "hi", "t"]}, "telegram_ids = []: List should"),
        ({"actor": "broadcast_message", "args": [[1, 2**63], "hi", "t"]}, "telegram_ids[1] = 92233720368"),
    ],
)  # fmt: skip
def test_what_would_die_in_the_worker_is_refused_at_the_door(
    client: FlaskClient, clean_tables: sa.Engine, payload: Any, reason: str
) -> None:
    answer = post_job(client, payload)
    assert answer.status_code == 422 and reason in answer.json["error"], answer.json
    assert jobs_count(clean_tables) == 0 and ready_count("notifications") == 0


def test_limits_answer_413_and_422_before_anything_runs(
    make_runtime: MakeRuntime, rabbitmq_vhost: str, clean_tables: sa.Engine
) -> None:
    import worker_app

    runtime = make_runtime(API_TOKEN=TOKEN, API_MAX_BODY_BYTES="1048576", BROADCAST_MAX_RECIPIENTS="1000")
    client = create_app(runtime, worker_app.broker).test_client()
    huge = post_job(client, {"actor": "send_notification", "args": [42, "x" * 2_000_000, "t"]})
    assert huge.status_code == 413 and huge.json["error"].startswith("413 Request Entity Too Large")
    many = post_job(client, {"actor": "broadcast_message", "args": [list(range(1001)), "hi", "t"]})
    assert (
        many.status_code == 422
        and "1001 distinct chat ids, more than BROADCAST_MAX_RECIPIENTS (1000)" in (many.json["error"])
    )
    assert jobs_count(clean_tables) == 0


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/api/v1/dead-letters?actor=%00", "actor: expected a name: a letter or _ first"),
        ("/api/v1/dead-letters?error=%00", "error: must not contain NUL"),
        ("/api/v1/dead-letters?limit=-5", "limit: Input should be greater than or equal to 1"),
        ("/api/v1/dead-letters?limit=abc", "limit: Input should be a valid integer"),
        (
            "/api/v1/dead-letters?status=gone",
            "status: Input should be 'dead', 'replayed', 'discarded' or 'all'",
        ),
        ("/api/v1/dead-letters?until=0.5", "until: '0.5' is not an ISO time"),
        ("/api/v1/dead-letters?nope=1", "nope: Extra inputs are not permitted"),
        (
            "/api/v1/dead-letters/99999999999999999999",
            "dead_letter_id: Input should be less than or equal to",
        ),
        ("/api/v1/jobs/%00", "job_id: must not contain NUL"),
    ],
)
def test_bad_queries_and_ids_are_422_naming_the_parameter(
    client: FlaskClient, path: str, reason: str
) -> None:
    answer = client.get(path, headers=AUTH)
    assert answer.status_code == 422 and answer.json["error"].startswith(reason), answer.json
    assert answer.json["detail"][0]["loc"] == reason.split(":", maxsplit=1)[0]


def test_status_all_lists_every_status(client: FlaskClient, clean_tables: sa.Engine) -> None:
    with clean_tables.begin() as conn:
        for message_id, status in (("s-1", "dead"), ("s-2", "discarded")):
            conn.execute(
                sa.text("""INSERT INTO dead_letters (message_id, queue_name, reason, status, first_failed_at,
                           last_failed_at) VALUES (:m, 'sync', 'failed', :s, now(), now())"""),
                {"m": message_id, "s": status},
            )
    assert client.get("/api/v1/dead-letters", headers=AUTH).json["total"] == 1
    assert client.get("/api/v1/dead-letters?status=all", headers=AUTH).json["total"] == 2
    assert (
        client.get("/api/v1/dead-letters?status=discarded", headers=AUTH).json["items"][0]["message_id"]
        == "s-2"
    )


def test_a_405_names_the_allowed_methods(client: FlaskClient) -> None:
    answer = client.delete("/api/v1/queues", headers=AUTH)
    assert answer.status_code == 405 and "GET" in answer.headers["Allow"]
    assert answer.json["error"] == "405 Method Not Allowed"


def test_a_queued_job_is_cancelled_once_and_an_unknown_one_is_404(
    client: FlaskClient, clean_tables: sa.Engine
) -> None:
    job_id = post_job(client, {"actor": "send_notification", "args": [42, "hi", "t"]}).json["job_id"]
    cancelled = client.post(f"/api/v1/jobs/{job_id}/cancel", headers={**AUTH, "X-Initiated-By": "admin:7"})
    assert cancelled.status_code == 200, cancelled.json
    assert (cancelled.json["outcome"], cancelled.json["status"]) == ("cancelled", "cancelled")
    job = client.get(f"/api/v1/jobs/{job_id}", headers=AUTH).json
    assert job["status"] == "cancelled" and job["cancel_requested_by"] == "admin:7"
    again = client.post(f"/api/v1/jobs/{job_id}/cancel", headers=AUTH)
    assert (
        again.status_code == 409 and again.json["error"] == f"nothing to cancel: job {job_id!r} is cancelled"
    )
    assert client.post("/api/v1/jobs/nope/cancel", headers=AUTH).status_code == 404


def test_a_body_nested_too_deeply_is_refused_not_a_500(client: FlaskClient) -> None:
    for path in ("/api/v1/jobs", "/api/v1/dead-letters/replay"):
        answer = client.post(path, data="[" * 100_000, headers={**AUTH, "Content-Type": "application/json"})
        assert answer.status_code == 422 and answer.json["error"].startswith("body: expected a JSON object")


def test_a_bad_path_on_a_post_names_the_path_parameter(client: FlaskClient) -> None:
    answer = client.post(f"/api/v1/jobs/{'x' * 65}/cancel", headers=AUTH)
    assert answer.status_code == 422 and answer.json["error"].startswith(
        "job_id: String should have at most 64"
    )
