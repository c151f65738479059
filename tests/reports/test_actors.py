"""The actors as the scheduler runs them (default period: yesterday, the last full week), once per
period and admin whatever the re-runs, and ``worker-app reports preview`` run as the real command."""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from actors.notifications.queue import drainer
from actors.reports import send_daily_report, send_weekly_report
from actors.reports.delivery import messages_total
from actors.reports.periods import week_label
from sandbox.server import RunningSandbox
from tests.fixtures.api import WORKER_APP
from tests.fixtures.notifications import ADMIN_CHAT, MakeRuntime
from tests.reports.data import daily_stats, payment_stats, store
from tests.reports.telegram_html import check
from worker_app.errors import PermanentError
from worker_app.runtime import Runtime


def queued(engine: sa.Engine) -> list[tuple[str, int]]:
    with engine.connect() as conn:
        return [(r.notification_type, r.telegram_id) for r in conn.execute(
            sa.text("SELECT notification_type, telegram_id FROM notification_queue ORDER BY created_at")
        )]  # fmt: skip


def test_the_daily_actor_sends_yesterdays_report_once_and_logs_its_summary(
    runtime: Runtime, sandbox: RunningSandbox, clean_tables: sa.Engine, caplog: pytest.LogCaptureFixture
) -> None:
    # Given yesterday's aggregates
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    store(
        runtime.redis,
        daily={yesterday: daily_stats(yesterday)},
        payments={yesterday: payment_stats(yesterday)},
    )
    before = messages_total().labels("daily", "queued")._value.get()

    # When the scheduler's message runs it, twice (a redelivery)
    first = send_daily_report()
    second = send_daily_report()
    runtime.service(drainer).drain()

    # Then the admin got yesterday's report once, as Telegram HTML; the run said so in one line
    assert first["period"] == second["period"] == yesterday.isoformat()
    assert (first["queued"], first["already_queued"], first["admins"], first["missing"]) == (1, 0, 1, [])
    assert (second["queued"], second["already_queued"]) == (0, 1)
    [entry] = sandbox.state.received()
    assert entry["status"] == 200 and entry["chat_id"] == ADMIN_CHAT
    assert f"{yesterday} (UTC)" in check(str(entry["text"])).text
    assert queued(clean_tables) == [("report_daily", ADMIN_CHAT)]
    assert messages_total().labels("daily", "queued")._value.get() == before + 1
    done = [r for r in caplog.records if r.getMessage().startswith("reports job done: send_daily_report")]
    assert len(done) == 2 and vars(done[0])["queued"] == 1 and vars(done[0])["report"] == "daily"


def test_the_weekly_actor_reports_the_last_full_week_and_any_day_names_its_week(
    runtime: Runtime, clean_tables: sa.Engine
) -> None:
    today = datetime.now(UTC).date()
    last_monday = today - timedelta(days=today.weekday() + 7)

    summary = send_weekly_report()
    assert summary["period"] == week_label(last_monday) and summary["parts"] == 1
    assert summary["missing"]["analytics"][0] == last_monday.isoformat()
    assert "missing_data" in summary["recommendations"]
    assert send_weekly_report(str(last_monday - timedelta(days=2)))["period"] == week_label(
        last_monday - timedelta(days=7)
    )
    assert queued(clean_tables) == [("report_weekly", ADMIN_CHAT)] * 2


def test_a_period_that_has_not_ended_is_refused(runtime: Runtime, clean_tables: sa.Engine) -> None:
    today = datetime.now(UTC).date()
    with pytest.raises(PermanentError, match="has not ended yet"):
        send_daily_report(today.isoformat())
    with pytest.raises(PermanentError, match="has not ended yet"):
        send_weekly_report(today.isoformat())
    with pytest.raises(PermanentError, match="is not a date"):
        send_daily_report("2026-02-30")
    assert queued(clean_tables) == []


def test_no_admin_configured_sends_nothing_and_says_so(
    make_runtime: MakeRuntime, clean_tables: sa.Engine, caplog: pytest.LogCaptureFixture
) -> None:
    make_runtime(ADMIN_TELEGRAM_IDS="")
    summary = send_daily_report()
    assert (summary["admins"], summary["queued"]) == (0, 0)
    assert "ADMIN_TELEGRAM_IDS is empty" in caplog.text
    assert queued(clean_tables) == []


def preview(sandbox: RunningSandbox, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TELEGRAM_API_URL": sandbox.url, "ADMIN_TELEGRAM_IDS": str(ADMIN_CHAT)}
    return subprocess.run([WORKER_APP, "reports", "preview", *args], env=env, capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip


def test_preview_prints_the_reports_without_sending_them(
    runtime: Runtime, sandbox: RunningSandbox, clean_tables: sa.Engine
) -> None:
    # Given a stored day in a finished week
    day = datetime.now(UTC).date() - timedelta(days=8)
    store(runtime.redis, daily={day: daily_stats(day, new=77)}, payments={day: payment_stats(day)})

    # When the reports are previewed
    daily, weekly, default = (
        preview(sandbox, "daily", "--date", day.isoformat()),
        preview(sandbox, "weekly", "--date", day.isoformat()),
        preview(sandbox, "daily"),
    )

    # Then they are printed, each message valid, and nothing is queued or sent
    assert daily.returncode == 0, daily.stderr
    assert (
        f"--- daily report {day}, message 1/1 (" in daily.stdout and "New: 77 · total: 1000" in daily.stdout
    )
    check(daily.stdout.split("---\n", 1)[1].strip())
    assert "1 message(s); not sent (send_daily_report sends it to 1 admin(s))" in daily.stderr
    monday = day - timedelta(days=day.weekday())
    assert weekly.returncode == 0 and f"Week {week_label(monday)}: Mon {monday}" in weekly.stdout
    assert default.returncode == 0 and "no data: cybervpn:stats:daily:" in default.stdout
    assert sandbox.state.received() == [] and queued(clean_tables) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("daily", "--date", "yesterday"), "'yesterday' is not a date (YYYY-MM-DD)"),
        (("weekly", "--date", "2026-13-01"), "is not a date"),
        (("daily", "--date", "2999-01-01"), "has not ended yet"),
        (("monthly",), "'monthly' is not one of 'daily', 'weekly'"),
    ],
)
def test_preview_names_a_bad_date_and_exits_2(
    sandbox: RunningSandbox, clean_tables: sa.Engine, args: tuple[str, ...], message: str
) -> None:
    done = preview(sandbox, *args)
    assert done.returncode == 2 and message in done.stderr and done.stdout == ""
    assert "--date" in done.stderr or args[0] == "monthly"
