"""A worker killed with SIGKILL in the middle of ``disable_expired_users`` on a real RabbitMQ.

4,000 of 20,000 users are past their expiry on a panel that lags (it does not expire them itself).
The worker is killed right after its first bulk call reaches the panel; the message, unacked, is
redelivered to a second worker. Read from the side effects only: every expired user must end
DISABLED, and each must have exactly one notice row and one audit row — none lost, none doubled.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from actors.subscriptions import disable_expired_users
from tests.fixtures.remnawave import Panel
from tests.fixtures.worker import wait_for, worker_group
from tests.reliability.report import ScenarioReport, report, scaled

USERS, EXPIRED = scaled(20_000), scaled(4_000)


def counts(engine: sa.Engine) -> tuple[int, int, int]:
    with engine.connect() as conn:
        return conn.execute(
            sa.text(
                "SELECT (SELECT count(*) FROM notification_queue"
                "        WHERE notification_type = 'subscription_disabled'),"
                " (SELECT count(DISTINCT entity_id) FROM audit_logs WHERE action = 'subscription_disabled'),"
                " (SELECT count(*) FROM audit_logs WHERE action = 'subscription_disabled')"
            )
        ).one()


def test_a_worker_killed_mid_disable_leaves_every_user_disabled_and_notified_once(
    tmp_path: Path, rabbitmq_vhost: str, panel: Panel, clean_tables: sa.Engine, redis_client: Any
) -> None:
    # Given a lagging panel with 4,000 expired users, every call slowed to make the run last
    panel.admin("POST", "tokens", {"token": os.environ["REMNAWAVE_API_TOKEN"], "scopes": None})
    panel.faults(auto_expire=False)
    panel.seed(count=EXPIRED, seed=21, statuses={"ACTIVE": 1.0}, expire_within_days=[-9, -1],
               without_telegram_fraction=0.2)  # fmt: skip
    panel.seed(count=USERS - EXPIRED, seed=22, statuses={"ACTIVE": 1.0}, expire_within_days=[1, 9])
    panel.faults(latency_ms=150)
    env = {"REMNAWAVE_URL": panel.url, "SUBSCRIPTIONS_DISABLE_MAX_FRACTION": "1"}

    # When the worker is killed right after its first bulk call
    with worker_group(tmp_path / "worker-1.log", env, ("subscriptions",), modules=(), processes=1) as first:
        disable_expired_users.send()
        wait_for(lambda: panel.calls("/api/users/bulk/update"), scaled(120), "the first bulk call")
        os.killpg(first.proc.pid, signal.SIGKILL)
        killed_at = time.time()
        first.proc.wait(timeout=60)
    bulk_before = len(panel.calls("/api/users/bulk/update"))
    panel.faults(latency_ms=0)

    # Then a second worker, getting the message again, finishes the job
    with worker_group(tmp_path / "worker-2.log", env, ("subscriptions",), modules=(), processes=1) as second:
        wait_for(lambda: counts(clean_tables)[2] >= EXPIRED, scaled(180), "every user audited", poll_s=0.5)
        done_at = time.time()
        wait_for(lambda: "subscriptions job done" in second.log(), scaled(60), "the run's last line")
    notices, users_audited, audits = counts(clean_tables)
    disabled = panel.admin("GET", "users?status=DISABLED")["count"]
    result = report(ScenarioReport(
        scenario=f"worker killed (SIGKILL) during disable_expired_users of {EXPIRED:,} users",
        messages=EXPIRED, processed=users_audited, lost=EXPIRED - disabled, duplicated=audits - users_audited,
        recovery_s=done_at - killed_at,
        note=f"{bulk_before} bulk call(s) before the kill; recovery = kill to every user audited",
    ))  # fmt: skip
    assert disabled == EXPIRED and result.lost == 0
    assert audits == users_audited == EXPIRED and result.duplicated == 0
    with clean_tables.connect() as conn:
        chats = conn.execute(
            sa.text("SELECT count(*) FROM subscription_actions WHERE telegram_id IS NOT NULL")
        ).scalar_one()
        still_open = conn.execute(
            sa.text("SELECT count(*) FROM subscription_actions WHERE done_at IS NULL")
        ).scalar_one()
    assert notices == chats and still_open == 0
