"""What stands in front of the fake panel's routes, over HTTP: the proxy-header rule (socket closed
without an answer), tokens and scopes, the faults, and the panel's own expiry job."""

from __future__ import annotations

import http.client
from datetime import timedelta

import pytest
import requests

from sandbox.remnawave.app import RunningRemnawave
from sandbox.remnawave.format import DEFAULT_TOKEN
from tests.sandbox.remnawave.helpers import (
    HEADERS,
    add_nodes,
    admin,
    api,
    iso,
    seed,
    stream,
)

# --- transport: proxy headers, tokens, scopes ---


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Forwarded-Proto": "https"},
        {"X-Forwarded-For": "", "X-Forwarded-Proto": "https"},
        {"X-Forwarded-For": "203.0.113.7"},
        {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "http"},
        {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https, https"},
    ],
    ids=["no-for", "empty-for", "no-proto", "http", "doubled-value"],
)
def test_wrong_proxy_headers_close_the_connection_without_an_answer(
    panel: RunningRemnawave, headers: dict[str, str]
) -> None:
    with pytest.raises(requests.ConnectionError):
        api(
            panel, "GET", "/api/system/health", headers={"Authorization": HEADERS["Authorization"], **headers}
        )

    assert [c["status"] for c in admin(panel, "calls", method="GET")] == ["dropped"]


def test_a_proto_header_sent_twice_reads_as_https_https_and_is_dropped(panel: RunningRemnawave) -> None:
    host, port = panel.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    connection.putrequest("GET", "/api/system/health")
    for name, value in [*HEADERS.items(), ("X-Forwarded-Proto", "https")]:
        connection.putheader(name, value)
    connection.endheaders()

    with pytest.raises(ConnectionError):
        connection.getresponse()
    connection.close()

    assert admin(panel, "calls", method="GET")[0]["forwarded_proto"] == "https, https"


def test_the_proxy_check_can_be_switched_off_and_admin_routes_never_need_it(panel: RunningRemnawave) -> None:
    admin(panel, "faults", {"proxy_check": False})

    plain = api(panel, "GET", "/api/system/health", headers={"Authorization": HEADERS["Authorization"]})

    assert plain.status_code == 200
    assert requests.get(f"{panel.url}/_sandbox/stats", timeout=5).status_code == 200


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token", f"Basic {DEFAULT_TOKEN}"])
def test_a_missing_or_unknown_token_is_401(panel: RunningRemnawave, authorization: str | None) -> None:
    headers = {k: v for k, v in HEADERS.items() if k != "Authorization"}
    if authorization:
        headers["Authorization"] = authorization

    response = api(panel, "GET", "/api/users", headers=headers)

    assert (response.status_code, response.json()) == (401, {"message": "Unauthorized", "statusCode": 401})


def test_a_token_without_the_routes_scope_is_403(panel: RunningRemnawave) -> None:
    admin(panel, "tokens", {"token": "reader", "scopes": ["nodes:read", "system"]})
    headers = {**HEADERS, "Authorization": "Bearer reader"}
    add_nodes(panel, "online")

    users = api(panel, "GET", "/api/users", headers=headers)
    nodes = api(panel, "GET", "/api/nodes", headers=headers)
    restart = api(
        panel, "POST", "/api/nodes/actions/restart-all", headers=headers, json={"forceRestart": False}
    )
    stats = api(panel, "GET", "/api/system/stats", headers=headers)

    forbidden = {"message": "Forbidden resource", "error": "Forbidden", "statusCode": 403}
    assert (users.status_code, users.json(), restart.status_code) == (403, forbidden, 403)
    assert (nodes.status_code, stats.status_code) == (200, 200)


# --- faults ---


def test_server_errors_stop_after_their_count(panel: RunningRemnawave) -> None:
    admin(panel, "faults", {"server_error": {"count": 2, "status": 503}})

    replies = [api(panel, "GET", "/api/system/health") for _ in range(3)]

    assert [r.status_code for r in replies] == [503, 503, 200]
    assert replies[0].headers["Content-Type"].startswith("text/plain")


def test_down_closes_every_api_connection_while_admin_answers(panel: RunningRemnawave) -> None:
    admin(panel, "faults", {"down": True})

    with pytest.raises(requests.ConnectionError):
        api(panel, "GET", "/api/system/health")
    admin(panel, "faults", {"down": None})

    assert api(panel, "GET", "/api/system/health").status_code == 200


def test_token_rejected_makes_every_call_401(panel: RunningRemnawave) -> None:
    admin(panel, "faults", {"token_rejected": True})

    assert api(panel, "GET", "/api/system/health").status_code == 401


# --- the panel's own expiry ---


def test_an_active_user_past_its_expiry_is_expired_when_read(panel: RunningRemnawave) -> None:
    user_id = seed(panel, {"status": "ACTIVE", "expireAt": iso(timedelta(minutes=-3))})[0]

    read = api(panel, "GET", f"/api/users/{user_id}").json()["response"]

    assert read["status"] == "EXPIRED"
    assert [u["id"] for u in stream(panel, status="EXPIRED")["users"]] == [user_id]


def test_with_auto_expire_off_an_active_user_stays_active_past_its_expiry(panel: RunningRemnawave) -> None:
    # Given a lagging panel and a user whose expiry just passed
    admin(panel, "faults", {"auto_expire": False})
    user_id = seed(panel, {"status": "ACTIVE", "expireAt": iso(timedelta(minutes=-3))})[0]

    # When it is read, then the expiry job catches up
    lagging = api(panel, "GET", f"/api/users/{user_id}").json()["response"]["status"]
    admin(panel, "faults", {"auto_expire": True})
    caught_up = api(panel, "GET", f"/api/users/{user_id}").json()["response"]["status"]

    # Then
    assert (lagging, caught_up) == ("ACTIVE", "EXPIRED")
