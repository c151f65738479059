"""``Idempotency-Key`` on the endpoints that create a job, over real PostgreSQL, Redis and RabbitMQ
(Flask's test client, and a real ``worker-app serve`` for concurrency and a refused publish)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from flask.testing import FlaskClient

from tests.fixtures.api import api_client, serving
from tests.fixtures.notifications import MakeRuntime
from tests.fixtures.ports import free_port
from tests.fixtures.scheduler import purge, ready_count
from worker_app import idempotency

TOKEN = "api-test-token-123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
JOB = {"actor": "send_notification", "args": [42, "hi", "test"]}
BULK = {"operation": "disable", "user_ids": [1, 2]}


@pytest.fixture
def keys(clean_tables: sa.Engine) -> sa.Engine:
    """The database, with no idempotency key left by an earlier test."""
    with clean_tables.begin() as conn:
        conn.execute(sa.text("DELETE FROM idempotency_keys"))
    return clean_tables


@pytest.fixture
def client(make_runtime: MakeRuntime, no_leftover_messages: None, keys: sa.Engine) -> Iterator[FlaskClient]:
    import worker_app

    client = api_client(make_runtime, TOKEN, "notifications")
    worker_app.broker.declare_queue("bulk", ensure=True)
    purge("bulk")
    yield client


def new_key() -> str:
    return f"key-{uuid.uuid4()}"


def post(client: FlaskClient, key: str | None, body: Any = JOB, path: str = "/api/v1/jobs") -> Any:
    headers = AUTH if key is None else {**AUTH, "Idempotency-Key": key}
    return client.post(path, json=body, headers=headers)


def jobs(engine: sa.Engine) -> list[tuple[str, str]]:
    """Every job row's ``(job_id, status)``, oldest first."""
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT job_id, status FROM jobs ORDER BY created_at, job_id"))
        return [(r.job_id, r.status) for r in rows]


def key_row(engine: sa.Engine, key: str) -> Any:
    with engine.connect() as conn:
        query = sa.text("SELECT * FROM idempotency_keys WHERE key = :key")
        return conn.execute(query, {"key": key}).mappings().first()


def reserve_by_hand(engine: sa.Engine, key: str, *, age_s: int, body: Any = JOB) -> None:
    """A ``pending`` reservation of ``key`` for ``POST /api/v1/jobs`` with ``body``, ``age_s`` old, as
    a request still publishing (or one that died doing so) leaves it."""
    with engine.begin() as conn:
        conn.execute(
            sa.text("""INSERT INTO idempotency_keys (key, scope, body_hash, owner, created_at)
                       VALUES (:key, '/api/v1/jobs', :hash, 'someone-else',
                               now() - make_interval(secs => :age))"""),
            {"key": key, "hash": idempotency.fingerprint("/api/v1/jobs", body), "age": age_s},
        )  # fmt: skip


def test_a_retry_with_the_same_key_and_body_answers_the_first_job_and_enqueues_nothing(
    client: FlaskClient, keys: sa.Engine
) -> None:
    # Given a job accepted under a key
    key = new_key()
    first = post(client, key)
    assert first.status_code == 202, first.json
    assert "Idempotent-Replayed" not in first.headers

    # When it is sent again, the same JSON with its keys in another order
    again = post(client, key, {"args": [42, "hi", "test"], "actor": "send_notification"})

    # Then the answer is the first job's, said to be a replay, and nothing more was enqueued
    assert again.status_code == 202 and again.json == first.json
    assert again.headers["Idempotent-Replayed"] == "true"
    assert jobs(keys) == [(first.json["job_id"], "queued")]
    assert ready_count("notifications") == 1
    assert key_row(keys, key)["state"] == "done"


def test_the_bulk_and_export_endpoints_replay_too(client: FlaskClient, keys: sa.Engine) -> None:
    key = new_key()
    answers = [post(client, key, BULK, "/api/v1/bulk/users") for _ in range(3)]
    assert [a.status_code for a in answers] == [202] * 3
    assert {a.json["job_id"] for a in answers} == {answers[0].json["job_id"]}
    assert [a.headers.get("Idempotent-Replayed") for a in answers] == [None, "true", "true"]
    assert len(jobs(keys)) == 1 and ready_count("bulk") == 1


def test_the_key_with_another_body_or_endpoint_is_a_422_naming_the_problem(
    client: FlaskClient, keys: sa.Engine
) -> None:
    # Given a job accepted under a key
    key = new_key()
    assert post(client, key).status_code == 202

    # When the key comes with another body, or to another endpoint
    other_body = post(client, key, {**JOB, "args": [43, "hi", "test"]})
    other_endpoint = post(client, key, BULK, "/api/v1/bulk/users")

    # Then each is refused, saying why, and nothing more is enqueued
    assert other_body.status_code == 422
    assert other_body.json["error"] == "Idempotency-Key: already used with a different request body"
    assert "send a new key" in other_body.json["detail"]
    assert other_endpoint.status_code == 422
    assert other_endpoint.json["error"] == "Idempotency-Key: already used for another endpoint (/api/v1/jobs)"
    assert len(jobs(keys)) == 1
    assert (ready_count("notifications"), ready_count("bulk")) == (1, 0)


@pytest.mark.parametrize(
    "key", ["", "k" * 256, "tab\there", "bell\x07", "caf\u00e9", "del\x7f"],
    ids=["empty", "256 characters", "tab", "control", "not ASCII", "DEL"],
)  # fmt: skip
def test_a_malformed_key_is_a_422_naming_the_header(client: FlaskClient, keys: sa.Engine, key: str) -> None:
    answer = post(client, key)
    assert answer.status_code == 422, answer.json
    assert answer.json["error"] == "Idempotency-Key: expected 1 to 255 printable ASCII characters"
    assert answer.json["detail"][0]["loc"] == "Idempotency-Key"
    assert jobs(keys) == [] and ready_count("notifications") == 0


def test_a_key_of_255_printable_characters_is_taken(client: FlaskClient, keys: sa.Engine) -> None:
    key = "~ " + "k" * 253
    assert post(client, key).status_code == 202
    assert post(client, key).headers["Idempotent-Replayed"] == "true"


def test_a_malformed_key_is_named_even_when_the_body_is_not_json(client: FlaskClient) -> None:
    headers = {**AUTH, "Idempotency-Key": "", "Content-Type": "text/plain"}
    answer: Any = client.post("/api/v1/jobs", data="not json", headers=headers)
    assert answer.status_code == 422 and answer.json["error"].startswith("Idempotency-Key: expected")


def test_a_key_older_than_24_hours_is_absent_and_its_reuse_creates_a_new_job(
    client: FlaskClient, keys: sa.Engine
) -> None:
    # Given a job accepted under a key a day and a second ago
    key = new_key()
    first = post(client, key).json["job_id"]
    with keys.begin() as conn:
        conn.execute(
            sa.text("UPDATE idempotency_keys SET created_at = created_at - interval '24 hours 1 second'")
        )

    # When the key comes again with the same body
    again = post(client, key)

    # Then it is a new job, and the key stands for it from now on
    assert again.status_code == 202 and "Idempotent-Replayed" not in again.headers
    assert again.json["job_id"] != first
    assert len(jobs(keys)) == 2 and ready_count("notifications") == 2
    assert key_row(keys, key)["job_id"] == again.json["job_id"]


def test_a_new_reservation_sweeps_away_other_expired_keys(client: FlaskClient, keys: sa.Engine) -> None:
    stale = [new_key() for _ in range(3)]
    for key in stale:
        reserve_by_hand(keys, key, age_s=25 * 3600)
    young = new_key()
    reserve_by_hand(keys, young, age_s=3600)
    assert post(client, new_key()).status_code == 202
    assert [key_row(keys, key) for key in stale] == [None, None, None]
    assert key_row(keys, young) is not None


def test_a_reservation_left_pending_by_a_dead_process_is_taken_over(
    client: FlaskClient, keys: sa.Engine
) -> None:
    key = new_key()
    reserve_by_hand(keys, key, age_s=idempotency.PENDING_TAKEOVER_S + 1)
    answer = post(client, key)
    assert answer.status_code == 202 and "Idempotent-Replayed" not in answer.headers
    assert key_row(keys, key)["job_id"] == answer.json["job_id"]
    assert ready_count("notifications") == 1


def test_a_request_waits_for_the_first_one_with_its_key_and_answers_its_job(
    client: FlaskClient, keys: sa.Engine
) -> None:
    # Given a key reserved by a request still publishing
    key = new_key()
    reserve_by_hand(keys, key, age_s=0)

    # When the retry arrives and, meanwhile, the first request is done
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(post, client, key)
        with keys.begin() as conn:
            conn.execute(sa.text("UPDATE idempotency_keys SET state = 'done', job_id = 'job-first'"))
        answer = waiting.result(timeout=30)

    # Then the retry answers the first request's job, and enqueues nothing
    assert answer.status_code == 202 and answer.json == {"job_id": "job-first"}
    assert answer.headers["Idempotent-Replayed"] == "true"
    assert jobs(keys) == [] and ready_count("notifications") == 0


def test_a_first_request_not_done_in_time_is_a_409_with_retry_after(
    client: FlaskClient, keys: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(idempotency, "WAIT_FOR_FIRST_S", 0.2)
    key = new_key()
    reserve_by_hand(keys, key, age_s=0)
    answer = post(client, key)
    assert answer.status_code == 409
    assert answer.json["error"] == "a request with this Idempotency-Key is in progress"
    assert answer.headers["Retry-After"] == str(idempotency.RETRY_AFTER_S)
    assert jobs(keys) == [] and ready_count("notifications") == 0


@pytest.mark.rabbitmq
def test_100_concurrent_requests_with_one_key_create_one_job_and_one_message(
    rabbitmq_vhost: str, no_leftover_messages: None, keys: sa.Engine, tmp_path: Path
) -> None:
    import worker_app

    worker_app.broker.declare_queue("notifications", ensure=True)
    key, start = new_key(), threading.Barrier(100)

    def send(_: int) -> requests.Response:
        start.wait(30)  # every request on its own connection (a server thread each), at once
        return requests.post(
            f"{base}/api/v1/jobs", json=JOB, headers={**AUTH, "Idempotency-Key": key}, timeout=60
        )

    with serving(tmp_path / "serve.log", {"API_TOKEN": TOKEN}) as base, ThreadPoolExecutor(100) as pool:
        answers = list(pool.map(send, range(100)))

    assert [a.status_code for a in answers] == [202] * 100, {a.status_code: a.text for a in answers}
    assert len({a.json()["job_id"] for a in answers}) == 1
    assert sorted(a.headers.get("Idempotent-Replayed", "") for a in answers) == [""] + ["true"] * 99
    assert jobs(keys) == [(answers[0].json()["job_id"], "queued")]
    assert ready_count("notifications") == 1
    log = (tmp_path / "serve.log").read_text()
    assert "Traceback" not in log, log[-3000:]


@pytest.mark.rabbitmq
def test_a_refused_publish_releases_the_key_so_a_retry_creates_the_job(
    rabbitmq_vhost: str, client: FlaskClient, keys: sa.Engine, tmp_path: Path
) -> None:
    # Given a server whose RabbitMQ refuses connections
    closed = f"127.0.0.1:{free_port()}"
    env = {"API_TOKEN": TOKEN, "RABBITMQ_URL": f"amqp://guest:guest@{closed}/x"}
    key = new_key()
    with serving(tmp_path / "serve.log", env) as base:
        # When a job is posted under a key
        refused = requests.post(
            f"{base}/api/v1/jobs", json=JOB, headers={**AUTH, "Idempotency-Key": key}, timeout=60
        )

    # Then it is a 503 naming RabbitMQ, and the key is free again
    assert refused.status_code == 503 and refused.json()["error"] == "RabbitMQ is unavailable"
    assert key_row(keys, key) is None

    # When the client retries with the key where RabbitMQ answers, Then the job is created and enqueued
    retried = post(client, key)
    assert retried.status_code == 202 and "Idempotent-Replayed" not in retried.headers
    assert [status for _, status in jobs(keys)] == ["failed", "queued"]
    assert jobs(keys)[1][0] == retried.json["job_id"] and ready_count("notifications") == 1


def test_the_document_shows_the_header_and_its_answers_on_each_endpoint(client: FlaskClient) -> None:
    spec: Any = client.get("/api/v1/openapi.json").json
    for path in ("/api/v1/jobs", "/api/v1/bulk/users", "/api/v1/bulk/broadcast", "/api/v1/exports"):
        operation = spec["paths"][path]["post"]
        header = {p["name"]: p for p in operation["parameters"] if p["in"] == "header"}["Idempotency-Key"]
        assert header["required"] is False and header["schema"]["maxLength"] == 255, path
        assert "Idempotent-Replayed" in operation["responses"]["202"]["headers"], path
        assert "Retry-After" in operation["responses"]["409"]["headers"], path
