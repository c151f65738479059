"""``POST /api/v1/queues/<queue>/pause|resume`` and the paused queues in ``GET /api/v1/queues``
(the workers' side: tests/e2e/test_queue_pause.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask.testing import FlaskClient

from tests.fixtures.api import api_client
from tests.fixtures.notifications import MakeRuntime

TOKEN = "pause-api-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def client(make_runtime: MakeRuntime, rabbitmq_vhost: str) -> Iterator[FlaskClient]:
    yield api_client(make_runtime, TOKEN, "payments")


def test_pause_and_resume_a_queue(client: FlaskClient) -> None:
    paused = client.post("/api/v1/queues/payments/pause", json={"reason": "Crypto Pay incident"},
                         headers={**AUTH, "X-Initiated-By": "admin:7"})  # fmt: skip
    assert (paused.status_code, paused.json) == (200, {"queue": "payments", "paused": True, "changed": True})
    again = client.post("/api/v1/queues/payments/pause", json={}, headers=AUTH)
    assert again.json == {"queue": "payments", "paused": True, "changed": False}  # the first pause is kept

    listed = client.get("/api/v1/queues", headers=AUTH).json
    assert listed is not None
    [pause] = listed["paused"]
    assert (pause["queue"], pause["paused_by"], pause["reason"]) == (
        "payments",
        "admin:7",
        "Crypto Pay incident",
    )
    assert {"bot_updates", "bot_updates.00", "bot_updates.15"} <= {q["queue"] for q in listed["queues"]}

    resumed = client.post("/api/v1/queues/payments/resume", headers=AUTH)
    assert resumed.json == {"queue": "payments", "paused": False, "changed": True}
    assert client.post("/api/v1/queues/payments/resume", headers=AUTH).json["changed"] is False  # type: ignore[index]
    assert client.get("/api/v1/queues", headers=AUTH).json["paused"] == []  # type: ignore[index]


def test_only_a_domain_queue_can_be_paused(client: FlaskClient) -> None:
    answer = client.post("/api/v1/queues/bot_updates.03/pause", json={}, headers=AUTH)
    assert answer.status_code == 404
    assert answer.json is not None and "'bot_updates.03' is not a domain queue" in answer.json["error"]
    assert client.post("/api/v1/queues/payments/pause", json={"reason": ""}, headers=AUTH).status_code == 422
    assert client.post("/api/v1/queues/payments/pause", json={"why": "x"}, headers=AUTH).status_code == 422
    assert client.post("/api/v1/queues/payments/pause", json={}).status_code == 401
