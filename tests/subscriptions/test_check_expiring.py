"""Expiry reminders against the sandbox panel, real PostgreSQL and Redis."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from actors.subscriptions import check_expiring_subscriptions
from actors.subscriptions.check_expiring import bracket_of, reminder_key
from tests.fixtures.notifications import MakeRuntime
from tests.fixtures.remnawave import Panel, user_spec
from worker_app.runtime import Runtime

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("left", "bracket"),
    [
        (timedelta(minutes=1), "6h"),
        (timedelta(hours=6), "6h"),
        (timedelta(hours=6, seconds=1), "24h"),
        (timedelta(hours=30), "3d"),
        (timedelta(days=3, hours=12), "7d"),
        (timedelta(days=7), "7d"),
        (timedelta(days=7, seconds=1), None),
        (timedelta(0), None),
        (-timedelta(hours=1), None),
    ],
)
def test_a_user_is_in_the_smallest_bracket_that_holds_the_time_left(
    left: timedelta, bracket: str | None
) -> None:
    found = bracket_of(NOW + left, NOW)
    assert (found[0] if found else None) == bracket


def reminders(engine: sa.Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                sa.text(
                    "SELECT telegram_id, message FROM notification_queue "
                    "WHERE notification_type = 'subscription_reminder' ORDER BY telegram_id"
                )
            )
        )


def test_each_due_user_gets_one_reminder_per_bracket_and_a_second_run_queues_none(
    panel: Panel, panel_runtime: Runtime, db_engine: sa.Engine, redis_client: Any
) -> None:
    # Given users in every bracket, one far off, one expired, one disabled and one without telegram
    panel.add_users(
        user_spec(expire_in=timedelta(hours=2), telegram_id=1001),
        user_spec(expire_in=timedelta(hours=20), telegram_id=1002),
        user_spec(expire_in=timedelta(days=2), telegram_id=1003, status="LIMITED"),
        user_spec(expire_in=timedelta(days=6), telegram_id=1004),
        user_spec(expire_in=timedelta(days=20), telegram_id=1005),
        user_spec(expire_in=-timedelta(hours=1), telegram_id=1006),
        user_spec(expire_in=timedelta(hours=2), telegram_id=1007, status="DISABLED"),
        user_spec(expire_in=timedelta(hours=2), telegram_id=None),
    )
    # When the job runs
    first = check_expiring_subscriptions()
    # Then the four due users with a telegram id get one reminder each, in their bracket
    rows = reminders(db_engine)
    assert [r.telegram_id for r in rows] == [1001, 1002, 1003, 1004]
    assert "within 6 hours" in rows[0].message and "in 7 days" in rows[3].message
    assert first["counts"]["queued"] == 4 and first["counts"]["no_telegram_id"] == 1
    assert redis_client.ttl(reminder_key(1, "6h")) > 6 * 3600 - 60
    # And a second run queues none
    second = check_expiring_subscriptions()
    assert len(reminders(db_engine)) == 4
    assert second["counts"].get("queued", 0) == 0 and second["counts"]["already_reminded"] == 4


def test_a_lost_redis_key_does_not_send_a_reminder_twice(
    panel: Panel, panel_runtime: Runtime, db_engine: sa.Engine, redis_client: Any
) -> None:
    panel.add_users(user_spec(expire_in=timedelta(hours=3), telegram_id=2001))
    check_expiring_subscriptions()
    redis_client.flushdb()  # Redis restarted without persistence
    again = check_expiring_subscriptions()
    assert len(reminders(db_engine)) == 1 and again["counts"].get("queued", 0) == 0


def test_the_next_bracket_reminds_again(panel: Panel, panel_runtime: Runtime, db_engine: sa.Engine) -> None:
    (user_id,) = panel.add_users(user_spec(expire_in=timedelta(days=6), telegram_id=3001))
    check_expiring_subscriptions()
    panel_runtime.remnawave.call(  # renewed for a shorter term, through the panel's own PATCH
        "PATCH",
        "/api/users",
        json={"id": user_id, "expireAt": user_spec(expire_in=timedelta(hours=5))["expireAt"]},
    )
    check_expiring_subscriptions()
    assert ["in 7 days" in r.message for r in reminders(db_engine)] == [True, False]


def limited_runtime(panel: Panel, make_runtime: MakeRuntime, limit: int) -> Runtime:
    panel.admin("POST", "tokens", {"token": os.environ["REMNAWAVE_API_TOKEN"], "scopes": None})
    return make_runtime(REMNAWAVE_URL=panel.url, CHECK_EXPIRING_SUBSCRIPTIONS_BATCH_LIMIT=limit)


def test_a_batch_limit_queues_that_many_reminders_a_run_and_the_next_run_the_rest(
    panel: Panel, make_runtime: MakeRuntime, db_engine: sa.Engine
) -> None:
    # Given five due users and CHECK_EXPIRING_SUBSCRIPTIONS_BATCH_LIMIT=3
    limited_runtime(panel, make_runtime, 3)
    panel.add_users(*[user_spec(expire_in=timedelta(hours=20), telegram_id=4001 + i) for i in range(5)])
    # When the job runs
    first = check_expiring_subscriptions()
    # Then it queues three reminders and says it stopped at its limit
    assert len(reminders(db_engine)) == 3
    assert (first["counts"]["queued"], first["batch_limit"], first["limited"]) == (3, 3, True)
    # And the next run queues the other two, and no one twice
    second = check_expiring_subscriptions()
    assert [r.telegram_id for r in reminders(db_engine)] == [4001, 4002, 4003, 4004, 4005]
    assert (second["counts"]["queued"], second["counts"]["already_reminded"]) == (2, 3)
    assert (second["batch_limit"], second["limited"]) == (3, False)


def test_with_a_batch_limit_lost_redis_keys_do_not_hold_the_rest_back(
    panel: Panel, make_runtime: MakeRuntime, db_engine: sa.Engine, redis_client: Any
) -> None:
    limited_runtime(panel, make_runtime, 2)
    panel.add_users(*[user_spec(expire_in=timedelta(hours=3), telegram_id=5001 + i) for i in range(3)])
    check_expiring_subscriptions()
    redis_client.flushdb()  # the first two users' keys are gone; their rows say they were reminded
    again = check_expiring_subscriptions()
    assert [r.telegram_id for r in reminders(db_engine)] == [5001, 5002, 5003]
    assert (again["counts"]["queued"], again["counts"]["already_reminded"], again["limited"]) == (1, 2, False)
