"""The fake panel's user reads over HTTP: every 3.x field, lookups and their A063, resolve, the list's
paging (id descending) and the stream's keyset pages and filters, and NestJS's 404 for a 2.x route."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox.remnawave.app import RunningRemnawave
from tests.sandbox.remnawave.helpers import (
    FUTURE,
    ISO_MS,
    SQUAD,
    TRAFFIC_FIELDS,
    USER_FIELDS,
    admin,
    api,
    assert_error,
    assert_validation_failed,
    iso,
    seed,
    stream,
    user,
)

# --- objects and envelopes ---


def test_a_created_user_has_every_3x_field_and_iso_millisecond_dates(panel: RunningRemnawave) -> None:
    # Given / When a user is created through the API
    response = api(panel, "POST", "/api/users", json={"username": "alice_1", "expireAt": iso(FUTURE)})

    # Then it is 201 in the response envelope with every field of the 3.x schema, and no uuid
    body = response.json()
    assert (response.status_code, set(body)) == (201, {"response"})
    created = body["response"]
    assert set(created) == USER_FIELDS
    assert set(created["userTraffic"]) == TRAFFIC_FIELDS
    assert (created["id"], created["status"], created["telegramId"]) == (1, "ACTIVE", None)
    assert all(ISO_MS.fullmatch(created[name]) for name in ("expireAt", "createdAt", "updatedAt"))
    assert created["subscriptionUrl"].endswith("/" + created["shortUuid"])
    assert created["activeInternalSquads"] and set(created["activeInternalSquads"][0]) == {"uuid", "name"}


def test_a_taken_username_is_a019(panel: RunningRemnawave) -> None:
    seed(panel, {"username": "bob_1"})

    response = api(panel, "POST", "/api/users", json={"username": "bob_1", "expireAt": iso(FUTURE)})

    assert_error(response, 400, "A019", "/api/users")


@pytest.mark.parametrize("lookup", ["id", "username", "shortUuid"])
def test_user_lookups_answer_the_user_or_a063(panel: RunningRemnawave, lookup: str) -> None:
    # Given one user
    created = user(panel, seed(panel, {"username": "carol_1"})[0])
    paths = {
        "id": "/api/users/{}",
        "username": "/api/users/by-username/{}",
        "shortUuid": "/api/users/by-short-uuid/{}",
    }

    # When it is looked up, and a missing one too
    found = api(panel, "GET", paths[lookup].format(created[lookup]))
    missing = api(
        panel, "GET", paths[lookup].format(999 if lookup == "id" else "nobody_here"), params={"x": "1"}
    )

    # Then the user comes back; the missing one is A063 with the path and its query string
    assert (found.status_code, found.json()["response"]) == (200, created)
    assert_error(
        missing, 404, "A063", paths[lookup].format(999 if lookup == "id" else "nobody_here") + "?x=1"
    )


def test_resolve_needs_exactly_one_identifier_and_a_missing_user_is_a025(panel: RunningRemnawave) -> None:
    created = user(panel, seed(panel, {"username": "dave_1"})[0])

    by_short = api(panel, "POST", "/api/users/resolve", json={"shortUuid": created["shortUuid"]})
    two = api(panel, "POST", "/api/users/resolve", json={"id": 1, "username": "dave_1"})
    missing = api(panel, "POST", "/api/users/resolve", json={"username": "nobody_here"})

    assert by_short.json() == {"response": {"id": 1, "username": "dave_1", "shortUuid": created["shortUuid"]}}
    assert_validation_failed(two)
    assert_error(missing, 404, "A025", "/api/users/resolve")


def test_list_is_ordered_by_id_descending_with_start_and_size(panel: RunningRemnawave) -> None:
    seed(panel, *[{} for _ in range(5)])

    page = api(panel, "GET", "/api/users", params={"start": 1, "size": 3}).json()["response"]
    default = api(panel, "GET", "/api/users").json()["response"]

    assert ([u["id"] for u in page["users"]], page["total"]) == ([4, 3, 2], 5)
    assert [u["id"] for u in default["users"]] == [5, 4, 3, 2, 1]


@pytest.mark.parametrize("size", [0, 1001, "many"])
def test_list_size_must_be_1_to_1000(panel: RunningRemnawave, size: Any) -> None:
    assert_validation_failed(api(panel, "GET", "/api/users", params={"size": size}))


def test_stream_pages_by_id_with_a_string_cursor_until_has_more_is_false(panel: RunningRemnawave) -> None:
    seed(panel, *[{} for _ in range(5)])

    first = stream(panel, size=2)
    second = stream(panel, size=2, cursor=first["nextCursor"])
    last = stream(panel, size=2, cursor=second["nextCursor"])

    pages = [([u["id"] for u in p["users"]], p["nextCursor"], p["hasMore"]) for p in (first, second, last)]
    assert pages == [([1, 2], "2", True), ([3, 4], "4", True), ([5], None, False)]


def test_stream_size_defaults_to_250_and_is_at_most_1000(panel: RunningRemnawave) -> None:
    admin(panel, "users", {"count": 300, "statuses": {"DISABLED": 1}})

    page = stream(panel)

    assert (len(page["users"]), page["nextCursor"], page["hasMore"]) == (250, "250", True)
    assert_validation_failed(api(panel, "GET", "/api/users/stream", params={"size": 1001}))


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"status": "DISABLED"}, [2]),
        ({"telegramId": "777"}, [1, 3]),
        ({"email": "x@example.com"}, [3]),
        ({"tag": "VIP"}, [2]),
        ({"trafficLimitStrategy": "MONTH"}, [3]),
        ({"externalSquadUuid": SQUAD}, [1]),
        ({"telegramId": "777", "cursor": "1"}, [3]),
    ],
)
def test_stream_filters_select_users(
    panel: RunningRemnawave, params: dict[str, str], expected: list[int]
) -> None:
    seed(
        panel,
        {"telegramId": 777, "externalSquadUuid": SQUAD},
        {"status": "DISABLED", "tag": "VIP"},
        {"telegramId": 777, "email": "x@example.com", "trafficLimitStrategy": "MONTH"},
    )

    assert [u["id"] for u in stream(panel, **params)["users"]] == expected


def test_a_2x_route_the_panel_no_longer_has_is_nests_404(panel: RunningRemnawave) -> None:
    response = api(panel, "GET", "/api/users/by-telegram-id/777")

    assert response.status_code == 404
    assert response.json() == {
        "message": "Cannot GET /api/users/by-telegram-id/777",
        "error": "Not Found",
        "statusCode": 404,
    }
