"""The bulk domain's endpoints over real PostgreSQL and RabbitMQ (Flask's test client; no mocks)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient

from tests.fixtures.api import api_client
from tests.fixtures.notifications import MakeRuntime
from tests.fixtures.scheduler import ready_count

TOKEN = "api-test-token-123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def client(make_runtime: MakeRuntime, no_leftover_messages: None) -> Iterator[FlaskClient]:
    yield api_client(make_runtime, TOKEN, "bulk")


def job_row(engine: sa.Engine, job_id: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT * FROM jobs WHERE job_id = :id"), {"id": job_id}).mappings().one()


def test_a_bulk_user_operation_is_accepted_tracked_and_enqueued(
    client: FlaskClient, clean_tables: sa.Engine
) -> None:
    body = {"operation": "extend", "user_ids": [1, 2, "x"], "params": {"days": 30}}
    answer = client.post("/api/v1/bulk/users", json=body, headers={**AUTH, "X-Initiated-By": "admin:77"})
    assert answer.status_code == 202, answer.json
    job = job_row(clean_tables, answer.json["job_id"])
    assert (job.actor_name, job.queue_name, job.status, job.initiated_by) == (
        "execute_bulk_user_operation", "bulk", "queued", "admin:77",
    )  # fmt: skip
    assert job.kwargs == {**body, "initiated_by": "admin:77"}  # the summary goes to that admin
    assert ready_count("bulk") == 1


def test_a_bulk_broadcast_to_all_is_accepted(client: FlaskClient, clean_tables: sa.Engine) -> None:
    body = {"telegram_ids": "all", "message": "Maintenance at 02:00", "notification_type": "broadcast",
            "initiated_by": "admin:5"}  # fmt: skip
    answer = client.post("/api/v1/bulk/broadcast", json=body, headers=AUTH)
    assert answer.status_code == 202, answer.json
    job = job_row(clean_tables, answer.json["job_id"])
    assert job.initiated_by == "admin:5" and "initiated_by" not in job.kwargs
    assert ready_count("bulk") == 1


@pytest.mark.parametrize(
    ("path", "body", "reason"),
    [
        ("/api/v1/bulk/users", {"operation": "explode", "user_ids": [1]}, "operation"),
        ("/api/v1/bulk/users", {"operation": "extend", "user_ids": [1]}, "params.days: extend needs"),
        ("/api/v1/bulk/users", {"operation": "disable", "user_ids": [1], "params": {"days": 1}},
         "params: disable takes no parameters"),
        ("/api/v1/bulk/users", {"operation": "disable"}, "user_ids"),
        ("/api/v1/bulk/users", {"operation": "disable", "user_ids": [1], "extra": 1}, "extra"),
        ("/api/v1/bulk/users", {"operation": "disable", "user_ids": [1], "initiated_by": "a\x00"},
         "initiated_by"),
        ("/api/v1/bulk/users", {"operation": "delete", "user_ids": [1, {"k\x00": 1}]},
         "must not contain NUL"),
        ("/api/v1/bulk/broadcast", {"telegram_ids": "everyone", "message": "x", "notification_type": "t"},
         "telegram_ids"),
        ("/api/v1/bulk/broadcast", {"telegram_ids": [1], "message": " ", "notification_type": "t"},
         "message"),
    ],
)  # fmt: skip
def test_bad_bulk_requests_get_422_naming_the_field_and_enqueue_nothing(
    client: FlaskClient, clean_tables: sa.Engine, path: str, body: Any, reason: str
) -> None:
    answer = client.post(path, json=body, headers=AUTH)
    assert answer.status_code == 422, answer.json
    assert reason in answer.json["error"] and "\n" not in answer.json["error"]
    with clean_tables.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM jobs")).scalar_one() == 0
    assert ready_count("bulk") == 0


def test_the_bulk_endpoints_are_in_the_openapi_document_with_their_arguments(client: FlaskClient) -> None:
    spec = client.get("/api/v1/openapi.json").json
    users = spec["paths"]["/api/v1/bulk/users"]["post"]
    assert set(users["responses"]) >= {"202", "401", "413", "422", "503"}
    schema = spec["components"]["schemas"]["ExecuteBulkUserOperationRequest"]
    assert schema["properties"]["operation"]["enum"] == [
        "disable",
        "enable",
        "reset_traffic",
        "delete",
        "extend",
    ]
    assert schema["required"] == ["operation", "user_ids"] and schema["additionalProperties"] is False
    assert "/api/v1/bulk/broadcast" in spec["paths"]
