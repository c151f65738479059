"""The fake panel's bulk user routes over HTTP: 202/204 without a body, the 1–500 ids rule, A089,
and what bulk update, extend and delete-by-status do."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from sandbox.remnawave.app import RunningRemnawave
from tests.sandbox.remnawave.helpers import (
    PAST,
    SQUAD,
    api,
    assert_error,
    assert_validation_failed,
    expiry_ms,
    iso,
    seed,
    seed_status,
    user,
)

# --- bulk ---


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("bulk/update", {"userIds": [1, 2, 999], "fields": {"description": "x"}}, 202),
        ("bulk/reset-traffic", {"userIds": [1, 999]}, 202),
        ("bulk/revoke-subscription", {"userIds": [1]}, 202),
        ("bulk/delete", {"userIds": [1, 999]}, 204),
        ("bulk/update-squads", {"userIds": [1], "activeInternalSquads": [SQUAD]}, 204),
        ("bulk/extend-expiration-date", {"userIds": [1, 999], "extendDays": 30}, 204),
        ("bulk/delete-by-status", {"status": "EXPIRED"}, 202),
        ("bulk/all/update", {"description": "x"}, 202),
        ("bulk/all/reset-traffic", None, 202),
        ("bulk/all/extend-expiration-date", {"extendDays": 1}, 202),
    ],
)
def test_bulk_calls_answer_their_status_with_no_body(
    panel: RunningRemnawave, path: str, body: Any, status: int
) -> None:
    seed(panel, {}, {})

    response = api(panel, "POST", f"/api/users/{path}", json=body)

    assert (response.status_code, response.content) == (status, b"")
    assert "Content-Type" not in response.headers


@pytest.mark.parametrize(
    "ids",
    [[], list(range(1, 502)), ["1"], [1.5], None],
    ids=["empty", "501", "strings", "fraction", "missing"],
)
@pytest.mark.parametrize("path", ["bulk/delete", "bulk/reset-traffic", "bulk/extend-expiration-date"])
def test_bulk_ids_must_be_1_to_500_integers(panel: RunningRemnawave, path: str, ids: Any) -> None:
    assert_validation_failed(api(panel, "POST", f"/api/users/{path}", json={"userIds": ids, "extendDays": 1}))


@pytest.mark.parametrize("status", ["EXPIRED", "LIMITED"])
@pytest.mark.parametrize("path", ["bulk/update", "bulk/all/update"])
def test_bulk_update_to_expired_or_limited_is_a089(panel: RunningRemnawave, path: str, status: str) -> None:
    body = {"userIds": [1], "fields": {"status": status}} if path == "bulk/update" else {"status": status}

    assert_error(api(panel, "POST", f"/api/users/{path}", json=body), 400, "A089", f"/api/users/{path}")


def test_bulk_update_disables_only_users_that_can_be_disabled(panel: RunningRemnawave) -> None:
    ids = [seed_status(panel, s) for s in ("ACTIVE", "EXPIRED", "LIMITED", "ACTIVE")]

    api(
        panel,
        "POST",
        "/api/users/bulk/update",
        json={"userIds": [*ids, 999], "fields": {"status": "DISABLED"}},
    )

    assert [user(panel, i)["status"] for i in ids] == ["DISABLED", "EXPIRED", "LIMITED", "DISABLED"]


def test_bulk_extend_adds_days_to_the_expiry_and_reactivates_expired_users(panel: RunningRemnawave) -> None:
    # Given a user expired two days ago and one expired 40 days ago
    recent = seed(panel, {"status": "EXPIRED", "expireAt": iso(PAST)})[0]
    old = seed(panel, {"status": "EXPIRED", "expireAt": iso(timedelta(days=-40))})[0]
    before = expiry_ms(user(panel, recent))

    # When both get 30 days in bulk
    api(
        panel,
        "POST",
        "/api/users/bulk/extend-expiration-date",
        json={"userIds": [recent, old], "extendDays": 30},
    )

    # Then the expiry moved by 30 days (not from now); only the one now in the future is ACTIVE
    assert expiry_ms(user(panel, recent)) == pytest.approx(before + 30 * 86_400_000, abs=2)
    assert [user(panel, i)["status"] for i in (recent, old)] == ["ACTIVE", "EXPIRED"]


@pytest.mark.parametrize("days", [0, 10_000, 1.5])
def test_bulk_extend_days_must_be_1_to_9999(panel: RunningRemnawave, days: Any) -> None:
    body = {"userIds": [1], "extendDays": days}

    assert_validation_failed(api(panel, "POST", "/api/users/bulk/extend-expiration-date", json=body))


def test_bulk_delete_by_status_removes_only_that_status(panel: RunningRemnawave) -> None:
    ids = [seed_status(panel, s) for s in ("ACTIVE", "EXPIRED", "DISABLED", "EXPIRED")]

    api(panel, "POST", "/api/users/bulk/delete-by-status", json={"status": "EXPIRED"})

    assert [api(panel, "GET", f"/api/users/{i}").status_code for i in ids] == [200, 404, 200, 404]
