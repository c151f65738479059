"""The monthly traffic reset against the sandbox panel and real PostgreSQL."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from actors.subscriptions import actions, reset_monthly_traffic
from actors.subscriptions.actions import Planned
from actors.subscriptions.report import RunReport
from actors.subscriptions.reset_traffic import KIND, month_start, reset_monthly
from tests.fixtures.notifications import MakeRuntime
from tests.fixtures.remnawave import Panel, user_spec
from worker_app.runtime import Runtime


def stamp(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_running_users_not_reset_this_month_are_reset_once_and_told_once(
    panel: Panel, panel_runtime: Runtime, db_engine: sa.Engine
) -> None:
    # Given users reset last month, never, and already this month, in every status, on a lagging panel
    panel.faults(auto_expire=False)
    this_month = month_start(datetime.now(UTC))
    last_month = stamp(this_month - timedelta(days=3))
    due = panel.add_users(
        user_spec(telegram_id=11, lastTrafficResetAt=last_month),
        user_spec(telegram_id=12, status="LIMITED", lastTrafficResetAt=last_month),
        user_spec(telegram_id=None, lastTrafficResetAt=None),
    )
    skipped = panel.add_users(
        user_spec(telegram_id=13, lastTrafficResetAt=stamp(this_month + timedelta(minutes=1))),
        user_spec(telegram_id=14, status="DISABLED", lastTrafficResetAt=last_month),
        user_spec(
            telegram_id=15, status="EXPIRED", expire_in=-timedelta(days=1), lastTrafficResetAt=last_month
        ),
        user_spec(
            telegram_id=16, status="LIMITED", expire_in=-timedelta(days=1), lastTrafficResetAt=last_month
        ),
    )
    # When the job runs
    report = reset_monthly_traffic()
    # Then exactly the due users are reset (LIMITED back to ACTIVE), in one bulk call
    assert report["counts"]["reset"] == 3 and report["month"] == this_month.strftime("%Y-%m")
    assert [panel.user(i)["status"] for i in due] == ["ACTIVE", "ACTIVE", "ACTIVE"]
    assert all(panel.user(i)["lastTrafficResetAt"] >= stamp(this_month) for i in due)
    assert panel.user(skipped[1])["lastTrafficResetAt"] == last_month
    assert panel.user(skipped[3])["status"] == "LIMITED"  # expired: stays cut off
    assert len(panel.calls("/api/users/bulk/reset-traffic")) == 1
    with db_engine.connect() as conn:
        told = conn.execute(
            sa.text("SELECT telegram_id FROM notification_queue WHERE notification_type = 'traffic_reset'")
        )
        assert sorted(r[0] for r in told) == [11, 12]
    # And a repeated run for the same month resets and tells no one
    again = reset_monthly_traffic()
    assert again["counts"].get("reset", 0) == 0
    assert len(panel.calls("/api/users/bulk/reset-traffic")) == 1


def test_resets_go_in_batches_of_the_configured_size(panel: Panel, make_runtime: MakeRuntime) -> None:
    panel.admin("POST", "tokens", {"token": os.environ["REMNAWAVE_API_TOKEN"], "scopes": None})
    make_runtime(REMNAWAVE_URL=panel.url, SUBSCRIPTIONS_RESET_BATCH_SIZE=100)
    panel.seed(count=1050, seed=7, statuses={"ACTIVE": 1.0}, expire_within_days=[3, 9])
    report = reset_monthly_traffic()
    assert report["counts"]["reset"] == 1050
    assert [c["user_ids"] for c in panel.calls("/api/users/bulk/reset-traffic")] == [100] * 10 + [50]


def test_the_month_is_the_scheduled_fires_so_a_slow_clock_still_resets_the_new_month(
    panel: Panel, panel_runtime: Runtime
) -> None:
    # Given a worker whose clock still reads the last moment of the old month when the 1st fires
    now = datetime.now(UTC)
    next_month = month_start(month_start(now) + timedelta(days=32))
    report = RunReport("reset_monthly_traffic")
    reset_monthly(panel_runtime.remnawave, panel_runtime.database, now=now, batch_size=100, report=report,
                  month_of=next_month)  # fmt: skip
    assert report.details["month"] == next_month.strftime("%Y-%m")


def test_an_action_left_open_in_an_earlier_month_is_closed_not_completed(
    panel: Panel, panel_runtime: Runtime, db_engine: sa.Engine
) -> None:
    (user_id,) = panel.add_users(user_spec(telegram_id=21))
    actions.record(panel_runtime.database, KIND, [Planned(user_id, "2020-01", 21)])
    reset_monthly_traffic()
    with db_engine.connect() as conn:
        row = conn.execute(sa.text("SELECT outcome FROM subscription_actions WHERE period = '2020-01'")).one()
        told = conn.execute(sa.text("SELECT count(*) FROM notification_queue")).scalar_one()
    assert row.outcome == "stale" and told == 1  # only this month's notice
