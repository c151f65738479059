"""The fake panel's admin API and seeds: the call log and stats, malformed admin input, the user
generator (deterministic, 100,000 users streamed in at most 101 calls), the demo data, and the state
used without HTTP."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests

from sandbox.remnawave.app import RunningRemnawave
from sandbox.remnawave.demo import DEMO_TELEGRAM_START, seed_demo
from sandbox.remnawave.format import DEFAULT_TOKEN, NODE_STATES, USER_STATUSES
from sandbox.remnawave.state import RemnawaveState
from tests.sandbox.remnawave.helpers import (
    HEADERS,
    admin,
    api,
    expiry_ms,
    seed,
    seed_status,
    stream,
)

# --- call log, stats, admin ---


def test_the_call_log_records_every_api_call(panel: RunningRemnawave) -> None:
    seed(panel, {}, {})
    api(
        panel,
        "POST",
        "/api/users/bulk/reset-traffic",
        json={"userIds": [1, 2]},
        headers={**HEADERS, "X-Request-ID": "r1"},
    )
    api(panel, "GET", "/api/users/9", params={"a": "b"})
    first_seq = admin(panel, "calls", method="GET")[0]["seq"]

    calls = admin(panel, "calls", method="GET")
    later = requests.get(f"{panel.url}/_sandbox/calls", params={"since": first_seq}, timeout=5).json()
    prefixed = requests.get(
        f"{panel.url}/_sandbox/calls", params={"path_prefix": "/api/users/9"}, timeout=5
    ).json()

    assert [(c["method"], c["path"], c["status"], c["user_ids"], c["request_id"]) for c in calls] == [
        ("POST", "/api/users/bulk/reset-traffic", 202, 2, "r1"),
        ("GET", "/api/users/9", 404, None, None),
    ]
    assert (calls[1]["query"], calls[1]["forwarded_for"], calls[1]["forwarded_proto"]) == (
        "a=b",
        "203.0.113.7",
        "https",
    )
    assert isinstance(calls[0]["at"], float)
    assert [c["path"] for c in later] == [c["path"] for c in prefixed] == ["/api/users/9"]


def test_stats_count_by_route_template_and_status(panel: RunningRemnawave) -> None:
    seed(panel, {})
    api(panel, "GET", "/api/users/1")
    api(panel, "GET", "/api/users/2")

    stats = admin(panel, "stats", method="GET")

    assert stats["total"] == 2
    assert stats["by_route"] == {"GET /api/users/{id}": {"200": 1, "404": 1}}


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("faults", {"meteor_strike": True}),
        ("faults", {"server_error": {"count": 1, "status": 404}}),
        ("faults", {"proxy_check": "yes"}),
        ("faults", {"version": "latest"}),
        ("users", {"count": 5, "statuses": {"HAPPY": 1}}),
        ("users", {"count": 5, "colour": "blue"}),
        ("users", {"users": [{"username": "x"}]}),
        ("users", {"users": [{"status": "SLEEPING"}]}),
        ("users", {"users": [{"shoeSize": 9}]}),
        ("nodes", {"nodes": [{"state": "melting"}]}),
        ("tokens", {"token": ""}),
        ("tokens", {"token": "t", "scopes": "users"}),
    ],
)
def test_admin_rejects_malformed_input_saying_what_was_wrong(
    panel: RunningRemnawave, path: str, body: dict[str, Any]
) -> None:
    response = requests.post(f"{panel.url}/_sandbox/{path}", json=body, timeout=5)

    assert response.status_code == 400
    assert response.json()["ok"] is False and response.json()["error"]


def test_the_admin_user_view_is_404_for_a_missing_user_and_counts_by_status(panel: RunningRemnawave) -> None:
    seed_status(panel, "DISABLED")

    missing = requests.get(f"{panel.url}/_sandbox/users/5", timeout=5)
    counts = requests.get(f"{panel.url}/_sandbox/users", params={"status": "DISABLED"}, timeout=5).json()

    assert (missing.status_code, missing.json()["ok"]) == (404, False)
    assert (counts["total"], counts["count"]) == (1, 1)


# --- seeding ---


def test_the_generator_is_deterministic_for_a_seed(panel: RunningRemnawave) -> None:
    spec = {"count": 200, "seed": 7, "without_telegram_fraction": 0.5, "telegram_id_start": 500}

    def generated() -> list[tuple[str, int | None]]:
        panel.state.reset()
        admin(panel, "users", spec)
        return [(u["status"], u["telegramId"]) for u in stream(panel, size=1000)["users"]]

    first, second = generated(), generated()

    assert first == second
    assert {status for status, _ in first} == set(USER_STATUSES)
    assert 0 < sum(t is None for _, t in first) < 200 and first[0][1] in (None, 500)


def test_100000_users_seed_and_stream_in_at_most_101_calls(panel: RunningRemnawave) -> None:
    # Given 100,000 generated users
    seeded = admin(panel, "users", {"count": 100_000, "seed": 1})

    # When the whole panel is streamed in pages of 1,000
    seen: list[int] = []
    cursor: str | None = None
    calls = 0
    with requests.Session() as session:
        while True:
            params = {"size": "1000", **({"cursor": cursor} if cursor else {})}
            page = session.get(f"{panel.url}/api/users/stream", params=params, headers=HEADERS, timeout=30)
            body = page.json()["response"]
            calls += 1
            seen.extend(u["id"] for u in body["users"])
            cursor = body["nextCursor"]
            if not body["hasMore"]:
                break

    # Then every user came once, in id order
    assert (seeded["created"], seeded["first_id"], seeded["last_id"]) == (100_000, 1, 100_000)
    assert seen == list(range(1, 100_001))
    assert calls <= 101


def test_demo_covers_every_status_reminder_bracket_and_node_state(panel: RunningRemnawave) -> None:
    # Given the demo seed
    seed_demo(panel.state)

    # When every user and node is read
    users = stream(panel, size=1000)["users"]
    nodes = api(panel, "GET", "/api/nodes").json()["response"]

    # Then every status and bracket is there, and the just-expired ACTIVE users were expired by the panel
    hours = [(expiry_ms(u) - time.time() * 1000) / 3_600_000 for u in users if u["status"] == "ACTIVE"]
    brackets = [(0, 6), (6, 24), (24, 72), (72, 168), (720, 10**6)]
    assert {u["status"] for u in users} == set(USER_STATUSES)
    assert all(any(low < h < high for h in hours) for low, high in brackets)
    assert any(u["username"].startswith("demo_active") and u["status"] == "EXPIRED" for u in users)
    assert any(u["telegramId"] is None for u in users)
    assert min(u["telegramId"] for u in users if u["telegramId"]) == DEMO_TELEGRAM_START
    states = {(n["isConnected"], n["isConnecting"], n["isDisabled"]) for n in nodes}
    assert len(states) == len(NODE_STATES)
    assert len({n["countryCode"] for n in nodes if n["isConnected"]}) == 3


def test_the_state_answers_without_http() -> None:
    # Given a state used directly, as the client tests may
    state = RemnawaveState()
    headers = {
        "authorization": f"Bearer {DEFAULT_TOKEN}",
        "x-forwarded-for": "1.2.3.4",
        "x-forwarded-proto": "https",
    }

    # When it is asked with and without the proxy headers
    reply = state.handle("GET", "/api/users/stream", {"size": "10"}, None, headers)
    dropped = state.handle("GET", "/api/users/stream", "", None, {"authorization": headers["authorization"]})

    # Then it answers the first and tells the transport to drop the second
    assert reply is not None and reply.status == 200
    assert reply.body["response"] == {"users": [], "nextCursor": None, "hasMore": False}
    assert dropped is None
