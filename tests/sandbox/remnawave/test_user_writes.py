"""The fake panel's user writes over HTTP: the actions' transitions and error codes (A025, A029,
A030), extend, revoke, PATCH's rules and validation, and DELETE's 204."""

from __future__ import annotations

import re
import time
from datetime import timedelta
from typing import Any

import pytest

from sandbox.remnawave.app import RunningRemnawave
from tests.sandbox.remnawave.helpers import (
    ISO_MS,
    PAST,
    admin,
    api,
    assert_error,
    assert_validation_failed,
    expiry_ms,
    iso,
    seed,
    seed_status,
    stream,
    user,
)

# --- user actions ---


@pytest.mark.parametrize(
    ("start", "action", "outcome"),
    [
        ("ACTIVE", "disable", "DISABLED"),
        ("DISABLED", "disable", "A029"),
        ("LIMITED", "disable", "DISABLED"),
        ("EXPIRED", "disable", "DISABLED"),
        ("ACTIVE", "enable", "A030"),
        ("DISABLED", "enable", "ACTIVE"),
        ("LIMITED", "enable", "ACTIVE"),
        ("EXPIRED", "enable", "ACTIVE"),
        ("LIMITED", "reset-traffic", "ACTIVE"),
        ("ACTIVE", "reset-traffic", "ACTIVE"),
        ("DISABLED", "reset-traffic", "DISABLED"),
        ("EXPIRED", "reset-traffic", "EXPIRED"),
    ],
)
def test_actions_change_status_or_answer_their_error_code(
    panel: RunningRemnawave, start: str, action: str, outcome: str
) -> None:
    # Given a user in the start status
    user_id = seed_status(panel, start, usedTrafficBytes=5000)
    path = f"/api/users/{user_id}/actions/{action}"

    # When the action is called
    response = api(panel, "POST", path)

    # Then the user has the new status, or the panel's "already" error (400)
    if re.fullmatch(r"A\d{3}", outcome):
        assert_error(response, 400, outcome, path)
    else:
        assert (response.status_code, response.json()["response"]["status"]) == (200, outcome)


def test_reset_traffic_zeroes_usage_and_the_threshold_and_stamps_the_reset(panel: RunningRemnawave) -> None:
    user_id = seed_status(
        panel, "LIMITED", usedTrafficBytes=10**9, trafficLimitBytes=10**9, lastTriggeredThreshold=80
    )

    reset = api(panel, "POST", f"/api/users/{user_id}/actions/reset-traffic").json()["response"]

    assert (reset["userTraffic"]["usedTrafficBytes"], reset["lastTriggeredThreshold"]) == (0, 0)
    assert ISO_MS.fullmatch(reset["lastTrafficResetAt"])


def test_revoke_gives_new_subscription_secrets(panel: RunningRemnawave) -> None:
    before = user(panel, seed(panel, {})[0])

    after = api(panel, "POST", "/api/users/1/actions/revoke").json()["response"]
    own = api(panel, "POST", "/api/users/1/actions/revoke", json={"shortUuid": "x" * 16}).json()["response"]

    assert after["shortUuid"] != before["shortUuid"] and after["vlessUuid"] != before["vlessUuid"]
    assert after["subRevokedAt"] is not None
    assert own["shortUuid"] == "x" * 16
    assert api(panel, "GET", f"/api/users/by-short-uuid/{before['shortUuid']}").status_code == 404


def test_extend_adds_days_to_a_future_expiry_and_repeating_it_extends_twice(panel: RunningRemnawave) -> None:
    # Given a user expiring in ten days
    user_id = seed_status(panel, "ACTIVE")
    before = expiry_ms(user(panel, user_id))

    # When extend is called twice with 3 days
    for _ in range(2):
        response = api(panel, "POST", f"/api/users/{user_id}/actions/extend", json={"days": 3})

    # Then it is relative: six days were added
    assert response.status_code == 200
    assert expiry_ms(response.json()["response"]) == pytest.approx(before + 6 * 86_400_000, abs=2)


@pytest.mark.parametrize(
    ("start", "after"), [("EXPIRED", "ACTIVE"), ("DISABLED", "DISABLED"), ("LIMITED", "LIMITED")]
)
def test_extend_counts_from_now_when_past_and_reactivates_only_expired_users(
    panel: RunningRemnawave, start: str, after: str
) -> None:
    # Given a user past its expiry (the panel's own job off: it would turn a LIMITED one EXPIRED)
    admin(panel, "faults", {"auto_expire": False})
    user_id = seed(panel, {"status": start, "expireAt": iso(PAST)})[0]
    called_at = time.time() * 1000 // 1  # whole ms: the panel keeps expiries to the millisecond (truncated)

    extended = api(panel, "POST", f"/api/users/{user_id}/actions/extend", json={"days": 5}).json()["response"]

    assert extended["status"] == after
    assert called_at + 5 * 86_400_000 <= expiry_ms(extended) <= time.time() * 1000 + 5 * 86_400_000


@pytest.mark.parametrize("body", [{"days": 0}, {}, {"days": "7"}])
def test_extend_needs_at_least_one_day(panel: RunningRemnawave, body: dict[str, Any]) -> None:
    seed(panel, {})

    assert_validation_failed(api(panel, "POST", "/api/users/1/actions/extend", json=body))


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/users/42/actions/disable", None),
        ("POST", "/api/users/42/actions/enable", None),
        ("POST", "/api/users/42/actions/reset-traffic", None),
        ("POST", "/api/users/42/actions/revoke", None),
        ("POST", "/api/users/42/actions/extend", {"days": 1}),
        ("PATCH", "/api/users", {"id": 42, "description": "x"}),
        ("DELETE", "/api/users/42", None),
    ],
)
def test_writes_to_a_missing_user_are_a025(
    panel: RunningRemnawave, method: str, path: str, body: Any
) -> None:
    assert_error(api(panel, method, path, json=body), 404, "A025", path)


# --- PATCH and DELETE ---


@pytest.mark.parametrize(
    ("start", "after"), [("ACTIVE", "DISABLED"), ("LIMITED", "LIMITED"), ("EXPIRED", "EXPIRED")]
)
def test_patch_disables_only_an_active_user_and_otherwise_changes_nothing(
    panel: RunningRemnawave, start: str, after: str
) -> None:
    user_id = seed_status(panel, start)

    response = api(panel, "PATCH", "/api/users", json={"id": user_id, "status": "DISABLED"})

    assert (response.status_code, response.json()["response"]["status"]) == (200, after)


@pytest.mark.parametrize(
    "fields",
    [
        {"status": "EXPIRED"},
        {"status": "LIMITED"},
        {"expireAt": "2020-01-01T00:00:00.000Z"},
        {"tag": "lower"},
        {},
    ],
)
def test_patch_refuses_invalid_fields(panel: RunningRemnawave, fields: dict[str, Any]) -> None:
    seed(panel, {"username": "erin_1"})

    body = {"username": "erin_1", **fields} if fields else {"description": "no id, no username"}
    assert_validation_failed(api(panel, "PATCH", "/api/users", json=body))


def test_patch_by_username_sets_fields_and_a_future_expiry_reactivates_an_expired_user(
    panel: RunningRemnawave,
) -> None:
    seed(panel, {"username": "frank_1", "status": "EXPIRED", "expireAt": iso(PAST), "telegramId": 5})
    new_expiry = iso(timedelta(days=30))

    body = {
        "username": "frank_1",
        "expireAt": new_expiry,
        "telegramId": None,
        "tag": "VIP_1",
        "email": "f@x.io",
    }
    patched = api(panel, "PATCH", "/api/users", json=body).json()["response"]

    assert (patched["status"], patched["expireAt"], patched["telegramId"]) == ("ACTIVE", new_expiry, None)
    assert (patched["tag"], patched["email"]) == ("VIP_1", "f@x.io")
    assert stream(panel, telegramId="5")["users"] == []


def test_delete_answers_204_without_a_body_and_the_user_is_gone(panel: RunningRemnawave) -> None:
    seed(panel, {})

    response = api(panel, "DELETE", "/api/users/1")

    assert (response.status_code, response.content) == (204, b"")
    assert api(panel, "GET", "/api/users/1").status_code == 404
