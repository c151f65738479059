"""Tier 2: the subscriptions jobs on the real middleware (StubBroker) when the panel fails."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from actors.subscriptions import disable_expired_users
from sandbox.server import RunningSandbox
from tests.fixtures.notifications import admin_messages
from tests.fixtures.remnawave import Panel, user_spec
from tests.fixtures.stub import DelayCapturingStubBroker, run_until_idle
from worker_app.policies import POLICIES
from worker_app.runtime import Runtime


def dead_letters(engine: sa.Engine) -> list[sa.Row]:
    with engine.connect() as conn:
        return list(conn.execute(sa.text("SELECT reason, attempts, exception_message FROM dead_letters")))


def test_a_panel_5xx_is_retried_per_the_subscriptions_policy(
    panel: Panel, panel_runtime: Runtime, capturing_broker: DelayCapturingStubBroker, clean_tables: sa.Engine
) -> None:
    # Given a lagging panel whose next answer is a 502
    panel.faults(auto_expire=False)
    (user_id,) = panel.add_users(user_spec(expire_in=-timedelta(hours=1)))
    panel.faults(server_error={"count": 1, "status": 502})
    # When the job runs
    disable_expired_users.send()
    run_until_idle(capturing_broker, "subscriptions")
    # Then it is retried after the domain's delay, and the retry does the work
    [(retry, delay)] = capturing_broker.held
    assert delay == POLICIES["subscriptions"].delay_ms(1) == 60_000
    capturing_broker.held.clear()
    capturing_broker.enqueue(retry)
    run_until_idle(capturing_broker, "subscriptions")
    assert panel.user(user_id)["status"] == "DISABLED"
    assert dead_letters(clean_tables) == []


def test_a_rejected_token_dies_at_once_with_one_clear_alert(
    panel: Panel,
    panel_runtime: Runtime,
    capturing_broker: DelayCapturingStubBroker,
    clean_tables: sa.Engine,
    sandbox: RunningSandbox,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given a panel that rejects the worker's token
    panel.faults(token_rejected=True)
    # When the job runs twice (two scheduled ticks)
    for _ in range(2):
        disable_expired_users.send()
        run_until_idle(capturing_broker, "subscriptions")
    # Then it is not retried: each run is recorded dead after one attempt
    assert capturing_broker.held == []
    rows = dead_letters(clean_tables)
    assert [(r.reason, r.attempts) for r in rows] == [("permanent_error", 1)] * 2
    assert "REMNAWAVE_API_TOKEN is not accepted" in rows[0].exception_message
    # And each run logged its end, with the error
    assert "REMNAWAVE_API_TOKEN is not accepted" in caplog.text and "subscriptions job failed" in caplog.text
    # And the admins get one alert saying so
    alerts = admin_messages(panel_runtime, sandbox)
    assert len(alerts) == 1 and "REMNAWAVE_API_TOKEN is not accepted" in alerts[0]
    assert len(panel.calls("/api/")) == 2  # one call per run: no retry storm
