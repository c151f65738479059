"""The acceptance run of the subscriptions issue: 100,000 panel users (mixed statuses, expiries over
±10 days, 20 % without a telegram id), on a panel that lags behind expiries.

The jobs' plain functions run with one fixed ``now``, so "a second run queues none" is exact: with
the wall clock, a user crossing into the next bracket between two runs (a few a minute at this
size) rightly gets that bracket's reminder.
"""

from __future__ import annotations

import math
import os
from datetime import UTC, datetime

import redis
import sqlalchemy as sa

from actors.subscriptions.check_expiring import REMIND_STATUSES, bracket_of, queue_reminders
from actors.subscriptions.disable_expired import DISABLE_STATUSES, Valve, disable_expired
from actors.subscriptions.report import RunReport
from tests.fixtures.notifications import MakeRuntime
from tests.fixtures.remnawave import Panel

USERS = 100_000


def test_100k_users_get_one_reminder_each_and_exactly_the_expired_are_disabled(
    panel: Panel, make_runtime: MakeRuntime, db_engine: sa.Engine, redis_client: redis.Redis
) -> None:
    # Given 100,000 users on a lagging panel, and no safety valve in the way
    panel.admin("POST", "tokens", {"token": os.environ["REMNAWAVE_API_TOKEN"], "scopes": None})
    runtime = make_runtime(REMNAWAVE_URL=panel.url)
    panel.faults(auto_expire=False)
    panel.seed(
        count=USERS, seed=15, statuses={"ACTIVE": 0.6, "LIMITED": 0.1, "DISABLED": 0.15, "EXPIRED": 0.15},
        expire_within_days=[-10, 10], without_telegram_fraction=0.2,
    )  # fmt: skip
    now = datetime.now(UTC)
    client = runtime.remnawave
    due = expired = 0
    for user in client.stream_users():
        due += (
            user.status in REMIND_STATUSES
            and user.telegram_id is not None
            and bool(bracket_of(user.expire_at, now))
        )
        expired += user.status in DISABLE_STATUSES and user.expire_at <= now
    assert due > 10_000 and expired > 10_000

    # When reminders run twice
    runs = [RunReport("check_expiring_subscriptions") for _ in range(2)]
    for report in runs:
        queue_reminders(client.user_pages(), runtime.database, redis_client, now=now, renew_url="https://t.me/x",
                        report=report)  # fmt: skip
    # Then every due user got exactly one reminder, and the second run queued none
    with db_engine.connect() as conn:
        rows, chats = conn.execute(
            sa.text("SELECT count(*), count(DISTINCT telegram_id) FROM notification_queue")
        ).one()
    assert runs[0].counts["queued"] == rows == chats == due
    assert runs[1].counts["queued"] == 0 and runs[1].counts["already_reminded"] == due

    # When expired users are disabled
    report = RunReport("disable_expired_users")
    disable_expired(client, runtime.database, runtime.alerts, now=now, valve=Valve(max_fraction=1.0),
                    renew_url="https://t.me/x", report=report)  # fmt: skip
    # Then exactly the ACTIVE users past expiry are disabled, in ≤ ⌈n/500⌉ + 2 bulk calls
    assert report.counts["disabled"] == expired
    assert len(panel.calls("/api/users/bulk/update")) <= math.ceil(expired / 500) + 2
    assert not [u.id for u in client.stream_users() if u.status in DISABLE_STATUSES and u.expire_at <= now]
