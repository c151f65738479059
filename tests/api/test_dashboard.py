"""Dashboard access rules over real services (Flask's test client): login, basic auth, CSRF."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient

from tests.fixtures.notifications import MakeRuntime
from worker_app.api import create_app

TOKEN = "dash-token-456"
PAGES = ("/queues", "/dead-letters", "/jobs", "/schedules", "/workers")


@pytest.fixture
def client(make_runtime: MakeRuntime, rabbitmq_vhost: str) -> Iterator[FlaskClient]:
    import worker_app

    yield create_app(make_runtime(API_TOKEN=TOKEN), worker_app.broker).test_client()


def csrf_of(client: FlaskClient, path: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).text)
    assert found is not None
    return found.group(1)


def log_in(client: FlaskClient) -> None:
    answer = client.post(
        "/login", data={"token": TOKEN, "csrf_token": csrf_of(client, "/login"), "next": "/jobs"}
    )
    assert answer.status_code == 302 and answer.headers["Location"] == "/jobs"


def dead_letter(engine: sa.Engine) -> int:
    with engine.begin() as conn:
        return int(
            conn.execute(
                sa.text("""INSERT INTO dead_letters (message_id, queue_name, actor_name, args, kwargs, reason,
                           attempts, first_failed_at, last_failed_at)
                           VALUES ('dash-1', 'sync', 'x', '[]', '{}', 'failed', 1, now(), now())
                           RETURNING id""")
            ).scalar_one()
        )


def status_of(engine: sa.Engine, dead_id: int) -> str:
    with engine.connect() as conn:
        return str(
            conn.execute(
                sa.text("SELECT status FROM dead_letters WHERE id = :i"), {"i": dead_id}
            ).scalar_one()
        )


def test_every_page_asks_for_the_token_first(client: FlaskClient) -> None:
    for page in PAGES:
        answer = client.get(page)
        assert answer.status_code == 302 and answer.headers["Location"].startswith("/login?next=")
    wrong = client.post("/login", data={"token": "nope", "csrf_token": csrf_of(client, "/login")})
    assert wrong.status_code == 200 and "wrong token" in wrong.text
    log_in(client)
    for page in PAGES:
        assert client.get(page).status_code == 200, page


def test_basic_auth_with_the_token_as_password(client: FlaskClient) -> None:
    good = base64.b64encode(f"ops:{TOKEN}".encode()).decode()
    bad = base64.b64encode(b"ops:guess").decode()
    assert client.get("/queues", headers={"Authorization": f"Basic {good}"}).status_code == 200
    assert client.get("/queues", headers={"Authorization": f"Basic {bad}"}).status_code == 302


def test_a_state_change_without_the_csrf_token_is_refused_and_changes_nothing(
    client: FlaskClient, clean_tables: sa.Engine
) -> None:
    dead_id = dead_letter(clean_tables)
    log_in(client)
    for data in ({"ids": str(dead_id)}, {"ids": str(dead_id), "csrf_token": "forged"}):
        answer = client.post("/dead-letters/discard", data=data)
        assert answer.status_code == 400 and answer.json == {"error": "400 Bad Request: bad CSRF token"}
    assert status_of(clean_tables, dead_id) == "dead"
    token = csrf_of(client, f"/dead-letters/{dead_id}")
    done = client.post("/dead-letters/discard", data={"ids": str(dead_id), "csrf_token": token})
    assert done.status_code == 302 and status_of(clean_tables, dead_id) == "discarded"


def test_unknown_ids_are_404(client: FlaskClient) -> None:
    log_in(client)
    assert client.get("/dead-letters/999999").json == {
        "error": "404 Not Found: no dead letter with id 999999"
    }
    assert client.get("/jobs/nope").status_code == 404
