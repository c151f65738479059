"""Switching off expired users against the sandbox panel, real PostgreSQL and Redis."""

from __future__ import annotations

import math
import os
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from click.testing import CliRunner

from actors.subscriptions import actions, disable_expired_users
from actors.subscriptions.actions import Planned
from actors.subscriptions.disable_expired import KIND, period_of, select_expired
from actors.subscriptions.renew import renew_user
from sandbox.server import RunningSandbox
from tests.fixtures.notifications import MakeRuntime, admin_messages
from tests.fixtures.remnawave import Panel, user_spec
from worker_app.cli import main
from worker_app.runtime import Runtime


def notices(engine: sa.Engine) -> list[int]:
    with engine.connect() as conn:
        query = "SELECT telegram_id FROM notification_queue WHERE notification_type = 'subscription_disabled'"
        return sorted(r[0] for r in conn.execute(sa.text(query)))


def audited(engine: sa.Engine) -> list[str]:
    with engine.connect() as conn:
        query = "SELECT entity_id FROM audit_logs WHERE action = 'subscription_disabled' ORDER BY id"
        return [r[0] for r in conn.execute(sa.text(query))]


def statuses(panel: Panel, ids: list[int]) -> list[str]:
    return [panel.user(i)["status"] for i in ids]


def test_running_users_past_their_expiry_are_disabled_notified_and_audited_once(
    panel: Panel, panel_runtime: Runtime, db_engine: sa.Engine
) -> None:
    # Given a panel that does not expire users itself (lagging), with some expired
    panel.faults(auto_expire=False)
    expired = panel.add_users(
        user_spec(expire_in=-timedelta(hours=1), telegram_id=501),
        user_spec(expire_in=-timedelta(days=3), telegram_id=502),
        user_spec(expire_in=-timedelta(minutes=5), telegram_id=None),
    )
    others = panel.add_users(
        user_spec(expire_in=-timedelta(days=1), telegram_id=503, status="EXPIRED"),
        user_spec(expire_in=-timedelta(days=1), telegram_id=504, status="DISABLED"),
        user_spec(expire_in=-timedelta(days=1), telegram_id=505, status="LIMITED"),
        *[user_spec(expire_in=timedelta(days=9), telegram_id=600 + i) for i in range(30)],
    )
    # When the job runs
    report = disable_expired_users()
    # Then exactly the ACTIVE expired users are disabled, in one bulk call (LIMITED ones are cut off
    # by their limit already; EXPIRED ones by the panel)
    assert statuses(panel, expired) == ["DISABLED"] * 3
    assert statuses(panel, others[:4]) == ["EXPIRED", "DISABLED", "LIMITED", "ACTIVE"]
    assert len(panel.calls("/api/users/bulk/update")) == 1
    assert report["counts"]["disabled"] == 3
    # And notified (those with a telegram id) and audited, once
    assert notices(db_engine) == [501, 502]
    assert audited(db_engine) == [str(i) for i in expired]
    # And a second run changes nothing
    again = disable_expired_users()
    assert again["counts"].get("disabled", 0) == 0
    assert notices(db_engine) == [501, 502] and len(audited(db_engine)) == 3


def test_bulk_calls_stay_within_one_per_500_users(panel: Panel, panel_runtime: Runtime) -> None:
    panel.faults(auto_expire=False)
    panel.seed(count=1201, seed=3, statuses={"ACTIVE": 1.0}, expire_within_days=[-3, -1])
    panel.seed(count=20000, seed=4, statuses={"ACTIVE": 1.0}, expire_within_days=[2, 9])
    report = disable_expired_users()
    assert report["counts"]["disabled"] == 1201
    assert len(panel.calls("/api/users/bulk/update")) <= math.ceil(1201 / 500) + 2


def test_the_safety_valve_disables_nobody_and_raises_one_critical_alert(
    panel: Panel, panel_runtime: Runtime, sandbox: RunningSandbox
) -> None:
    # Given 30 % of the running users expired
    panel.faults(auto_expire=False)
    panel.seed(count=300, seed=5, statuses={"ACTIVE": 1.0}, expire_within_days=[-5, -1])
    panel.seed(count=700, seed=6, statuses={"ACTIVE": 1.0}, expire_within_days=[1, 9])
    # When the job runs, twice
    first = disable_expired_users()
    disable_expired_users()
    # Then nobody is disabled
    assert first["counts"]["held_by_valve"] == 300 and first["valve"] == "held"
    assert panel.calls("/api/users/bulk/update") == []
    # And the admins got one critical alert that says what to do
    alerts = admin_messages(panel_runtime, sandbox)
    assert len(alerts) == 1
    assert alerts[0].startswith("[CRITICAL]") and "disabled NO ONE: 300 of 1000" in alerts[0]
    assert "--dry-run" in alerts[0]


def test_a_run_killed_after_its_bulk_call_is_finished_by_the_next_run(
    panel: Panel, panel_runtime: Runtime, db_engine: sa.Engine
) -> None:
    # Given a run that recorded its batch and disabled it, then died before completing it
    panel.faults(auto_expire=False)
    ids = panel.add_users(*[user_spec(expire_in=-timedelta(hours=2), telegram_id=700 + i) for i in range(4)])
    users = [panel_runtime.remnawave.get_user(i) for i in ids]
    planned = [Planned(u.id, period_of(u.expire_at), u.telegram_id) for u in users]
    actions.record(panel_runtime.database, KIND, planned)
    panel_runtime.remnawave.bulk_disable(ids)
    # When the next run comes
    report = disable_expired_users()
    # Then it completes them: each notified and audited once, none disabled again
    assert report["counts"]["completed_after_crash"] == 4
    assert notices(db_engine) == [700, 701, 702, 703]
    assert len(audited(db_engine)) == 4
    assert len(panel.calls("/api/users/bulk/update")) == 1


def test_a_user_renewed_or_deleted_after_a_crash_is_left_alone(
    panel: Panel, panel_runtime: Runtime, db_engine: sa.Engine
) -> None:
    panel.faults(auto_expire=False)
    renewed, deleted = panel.add_users(
        user_spec(expire_in=-timedelta(hours=2), telegram_id=801),
        user_spec(expire_in=-timedelta(hours=2), telegram_id=802),
    )
    client = panel_runtime.remnawave
    planned = [
        Planned(u.id, period_of(u.expire_at), u.telegram_id) for u in map(client.get_user, [renewed, deleted])
    ]
    actions.record(panel_runtime.database, KIND, planned)
    client.extend_user(renewed, 30)
    client.call("DELETE", f"/api/users/{deleted}")
    report = disable_expired_users()
    assert report["counts"]["renewed_meanwhile"] == 1 and report["counts"]["not_found"] == 1
    assert panel.user(renewed)["status"] == "ACTIVE" and notices(db_engine) == []


def test_a_payment_brings_a_disabled_user_back_to_active(panel: Panel, panel_runtime: Runtime) -> None:
    panel.faults(auto_expire=False)
    (user_id,) = panel.add_users(user_spec(expire_in=-timedelta(hours=2)))
    disable_expired_users()
    renewed = renew_user(panel_runtime.remnawave, panel_runtime.database, user_id, 30)
    assert renewed.status == "ACTIVE" and renewed.expire_at > datetime.now(UTC) + timedelta(days=29)


def test_a_user_an_admin_disabled_stays_disabled_after_a_renewal(
    panel: Panel, panel_runtime: Runtime
) -> None:
    (user_id,) = panel.add_users(user_spec(status="DISABLED", expire_in=timedelta(days=3)))
    renewed = renew_user(panel_runtime.remnawave, panel_runtime.database, user_id, 30)
    assert renewed.status == "DISABLED" and renewed.expire_at > datetime.now(UTC) + timedelta(days=32)


def test_a_user_who_pays_between_the_scan_and_the_bulk_call_is_not_disabled(
    panel: Panel, panel_runtime: Runtime, db_engine: sa.Engine
) -> None:
    # Given a run that has scanned an expired user
    panel.faults(auto_expire=False)
    (user_id,) = panel.add_users(user_spec(expire_in=-timedelta(hours=2), telegram_id=991))
    client = panel_runtime.remnawave
    found = select_expired(client.user_pages(), datetime.now(UTC))
    assert [p.user_id for p in found.expired] == [user_id]
    # When the user pays before the run's bulk call
    renew_user(client, panel_runtime.database, user_id, 30)
    acted, calls = actions.act(
        panel_runtime.database,
        KIND,
        found.expired,
        client.bulk_disable,
        audit_action="x",
        notice=lambda p: None,
    )
    # Then the run leaves the user alone
    assert (acted, calls) == (0, 0)
    assert panel.user(user_id)["status"] == "ACTIVE" and notices(db_engine) == []


def test_a_user_an_admin_re_enabled_is_not_disabled_again_for_the_same_expiry(
    panel: Panel, panel_runtime: Runtime
) -> None:
    panel.faults(auto_expire=False)
    (user_id,) = panel.add_users(user_spec(expire_in=-timedelta(hours=2), telegram_id=992))
    disable_expired_users()
    panel_runtime.remnawave.user_action(user_id, "enable")  # support lets the user in for a day
    again = disable_expired_users()
    assert panel.user(user_id)["status"] == "ACTIVE"
    assert again["counts"]["already_handled"] == 1 and "disabled" not in again["counts"]


def test_dry_run_lists_who_would_be_disabled_and_changes_nothing(
    panel: Panel, panel_runtime: Runtime
) -> None:
    panel.faults(auto_expire=False)
    (user_id,) = panel.add_users(user_spec(expire_in=-timedelta(hours=2), telegram_id=901))
    result = CliRunner().invoke(main, ["subscriptions", "disable-expired", "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    assert f'"id": {user_id}' in result.output and "1 of 1 ACTIVE users expired" in result.output
    assert panel.user(user_id)["status"] == "ACTIVE"


def test_dry_run_against_an_unreachable_panel_exits_3_naming_it(make_runtime: MakeRuntime) -> None:
    make_runtime(REMNAWAVE_URL="http://127.0.0.1:1")
    result = CliRunner().invoke(main, ["subscriptions", "disable-expired", "--dry-run"])
    assert result.exit_code == 3, result.output
    assert "the Remnawave panel is unreachable (REMNAWAVE_URL http://127.0.0.1:1)" in result.output


def test_dry_run_with_a_rejected_token_exits_2_naming_the_setting(
    panel: Panel, make_runtime: MakeRuntime
) -> None:
    make_runtime(REMNAWAVE_URL=panel.url, REMNAWAVE_API_TOKEN="not-the-panels-token")
    result = CliRunner().invoke(main, ["subscriptions", "disable-expired", "--dry-run"])
    assert result.exit_code == 2, result.output
    assert (
        "REMNAWAVE_API_TOKEN is not accepted" in result.output and "not-the-panels-token" not in result.output
    )


def limited_runtime(panel: Panel, make_runtime: MakeRuntime, limit: int) -> Runtime:
    panel.admin("POST", "tokens", {"token": os.environ["REMNAWAVE_API_TOKEN"], "scopes": None})
    return make_runtime(REMNAWAVE_URL=panel.url, DISABLE_EXPIRED_USERS_BATCH_LIMIT=limit)


def test_a_batch_limit_disables_that_many_users_a_run_and_the_next_run_the_rest(
    panel: Panel, make_runtime: MakeRuntime, db_engine: sa.Engine
) -> None:
    # Given five expired users on a lagging panel and DISABLE_EXPIRED_USERS_BATCH_LIMIT=3
    panel.faults(auto_expire=False)
    limited_runtime(panel, make_runtime, 3)
    expired = panel.add_users(*[user_spec(expire_in=-timedelta(hours=1), telegram_id=1100 + i)
                                for i in range(5)])  # fmt: skip
    # When the job runs
    first = disable_expired_users()
    # Then it disables three, in one bulk call of three, and says it stopped at its limit
    assert statuses(panel, expired).count("DISABLED") == 3
    assert (first["counts"]["disabled"], first["batch_limit"], first["limited"]) == (3, 3, True)
    assert [c["user_ids"] for c in panel.calls("/api/users/bulk/update")] == [3]
    # And the next run disables the other two; each user is notified and audited once
    second = disable_expired_users()
    assert statuses(panel, expired) == ["DISABLED"] * 5
    assert (second["counts"]["disabled"], second["batch_limit"], second["limited"]) == (2, 3, False)
    assert [c["user_ids"] for c in panel.calls("/api/users/bulk/update")] == [3, 2]
    assert notices(db_engine) == [1100, 1101, 1102, 1103, 1104]
    assert sorted(audited(db_engine)) == sorted(str(i) for i in expired)


def test_with_a_batch_limit_a_user_an_admin_re_enabled_takes_no_room(
    panel: Panel, make_runtime: MakeRuntime
) -> None:
    panel.faults(auto_expire=False)
    runtime = limited_runtime(panel, make_runtime, 1)
    first, second = panel.add_users(user_spec(expire_in=-timedelta(hours=2), telegram_id=1201),
                                     user_spec(expire_in=-timedelta(hours=1), telegram_id=1202))  # fmt: skip
    assert disable_expired_users()["limited"] is True
    runtime.remnawave.user_action(first, "enable")  # support lets the first user in for a day
    again = disable_expired_users()
    assert statuses(panel, [first, second]) == ["ACTIVE", "DISABLED"]
    assert again["counts"]["already_handled"] == 1 and again["counts"]["disabled"] == 1
    assert again["limited"] is False
