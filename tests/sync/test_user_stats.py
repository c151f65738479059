"""sync_user_stats: the sandbox panel's user counts cached in real Redis with their TTL."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from typing import Any

import pytest
import redis

from actors.sync import sync_user_stats
from actors.sync.user_stats import SUMMARY_KEY, summary_of
from tests.fixtures.notifications import MakeRuntime
from tests.fixtures.remnawave import Panel
from worker_app.clients.remnawave import RemnawaveUnavailable
from worker_app.runtime import Runtime


def summary(redis_client: redis.Redis) -> dict[str, Any]:
    raw = redis_client.get(SUMMARY_KEY)
    assert raw is not None, f"{SUMMARY_KEY} is missing"
    found: dict[str, Any] = json.loads(str(raw))
    return found


def test_the_summary_matches_the_panels_users_and_lives_fifteen_minutes(
    panel: Panel, panel_runtime: Runtime, redis_client: redis.Redis
) -> None:
    # Given 500 users in every status and users online on an online node (not on an offline one)
    panel.seed(count=500, seed=7, statuses={"ACTIVE": 0.6, "DISABLED": 0.1, "LIMITED": 0.1, "EXPIRED": 0.2})
    panel.admin("POST", "nodes", {"nodes": [{"state": "online", "usersOnline": 12},
                                            {"state": "offline", "usersOnline": 5}]})  # fmt: skip
    users = panel.admin("GET", "users")

    # When the sync runs
    report = sync_user_stats()

    # Then the key holds the panel's counts, for 15 minutes
    assert users["total"] == 500 and all(n > 0 for n in users["by_status"].values())
    cached = summary(redis_client)
    assert {k: cached[k] for k in ("total", "active", "disabled", "limited", "expired", "online")} == {
        "total": 500,
        **{status.lower(): n for status, n in users["by_status"].items()},
        "online": 12,
    }
    assert cached["never_online"] == 500 and cached["online_last_day"] == 12
    assert datetime.fromisoformat(cached["synced_at"]) <= datetime.now(UTC)
    assert 890 <= redis_client.ttl(SUMMARY_KEY) <= 900
    assert report["counts"] == {"written": 1} and report["total"] == 500

    # When users are added and it runs again, the summary follows them
    panel.seed(count=20, statuses={"DISABLED": 1})
    sync_user_stats()
    assert (summary(redis_client)["total"], summary(redis_client)["disabled"]) == (
        520,
        users["by_status"]["DISABLED"] + 20,
    )


def test_the_ttl_is_a_setting(panel: Panel, make_runtime: MakeRuntime, redis_client: redis.Redis) -> None:
    panel.admin("POST", "tokens", {"token": os.environ["REMNAWAVE_API_TOKEN"], "scopes": None})
    make_runtime(REMNAWAVE_URL=panel.url, SYNC_USER_STATS_TTL_S=120)
    sync_user_stats()
    assert 110 <= redis_client.ttl(SUMMARY_KEY) <= 120


def test_a_failing_panel_leaves_the_previous_summary_in_place(
    panel: Panel, panel_runtime: Runtime, redis_client: redis.Redis
) -> None:
    # Given a summary cached from 3 users
    panel.seed(count=3)
    sync_user_stats()
    before = redis_client.get(SUMMARY_KEY)

    # When the panel answers 502 while users were added
    panel.seed(count=4)
    panel.faults(server_error={"count": 1, "status": 502})
    with pytest.raises(RemnawaveUnavailable):
        sync_user_stats()

    # Then the previous summary stays until its TTL (the run is retried per the sync policy)
    assert redis_client.get(SUMMARY_KEY) == before and summary(redis_client)["total"] == 3
    assert redis_client.ttl(SUMMARY_KEY) > 0


@pytest.mark.parametrize(
    "broken",
    [
        {"users": {"statusCounts": {"ACTIVE": 1, "DISABLED": 0, "LIMITED": 0}}},  # a status missing
        {"users": {"statusCounts": {"ACTIVE": "many", "DISABLED": 0, "LIMITED": 0, "EXPIRED": 0}}},
        {"users": {"statusCounts": {"ACTIVE": -1, "DISABLED": 0, "LIMITED": 0, "EXPIRED": 0}}},
        {
            "users": {"statusCounts": {"ACTIVE": 1, "DISABLED": 0, "LIMITED": 0, "EXPIRED": 0}}
        },  # no onlineStats
    ],
)
def test_a_reply_that_does_not_fit_is_never_cached(broken: dict[str, Any]) -> None:
    with pytest.raises(RemnawaveUnavailable, match="malformed system stats"):
        summary_of(broken, now=datetime.now(UTC))
