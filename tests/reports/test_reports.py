"""The daily and weekly reports built from synthetic stored aggregates on the real Redis and
PostgreSQL, sent through the outbox and the ``notification_queue`` consumer to the sandbox Telegram,
and checked as Telegram would parse them (:mod:`tests.reports.telegram_html`)."""

from __future__ import annotations

import json
from datetime import date, timedelta

import sqlalchemy as sa

from actors.notifications.queue import drainer
from actors.reports.daily import daily_report
from actors.reports.delivery import Report, deliver
from actors.reports.weekly import weekly_report
from sandbox.server import RunningSandbox
from tests.fixtures.notifications import ADMIN_CHAT
from tests.reports.data import (
    MONDAY,
    NODE_1,
    NODE_2,
    NOW,
    OPTIONS,
    SUNDAY,
    daily_stats,
    healthy_fleet,
    node,
    payment_stats,
    store,
    two_weeks,
)
from tests.reports.telegram_html import check
from worker_app.runtime import Runtime

OTHER_ADMIN = 777001


def daily(runtime: Runtime, day: date = SUNDAY) -> Report:
    return daily_report(runtime.redis, runtime.database, day, now=NOW, options=OPTIONS)


def weekly(runtime: Runtime, monday: date = MONDAY) -> Report:
    return weekly_report(runtime.redis, runtime.database, monday, now=NOW, options=OPTIONS)


def visible(report: Report) -> str:
    """The report's text as the admin sees it (every part checked as Telegram parses it)."""
    return "\n".join(check(part).text for part in report.parts)


def send(
    runtime: Runtime, sandbox: RunningSandbox, report: Report, admins: list[int]
) -> list[dict[str, object]]:
    """Queue ``report`` for ``admins`` and drain the queue to the sandbox; what it received."""
    deliver(runtime.database, report, admins)
    runtime.service(drainer).drain()
    return sandbox.state.received()


def test_the_daily_and_weekly_reports_of_a_week_are_accepted_by_telegram(
    runtime: Runtime, sandbox: RunningSandbox, clean_tables: sa.Engine
) -> None:
    # Given two weeks of stored aggregates and a fleet with incidents
    two_weeks(runtime.redis)
    healthy_fleet(runtime.redis)

    # When both reports are sent to two admins through the outbox
    reports = [daily(runtime), weekly(runtime)]
    received = [
        entry for report in reports for entry in send(runtime, sandbox, report, [ADMIN_CHAT, OTHER_ADMIN])
    ]

    # Then every message was accepted by the sandbox's HTML parsing, in HTML mode, and parses cleanly
    sent = {(e["chat_id"], e["text"]) for e in received}
    assert sent == {
        (chat, part) for report in reports for part in report.parts for chat in (ADMIN_CHAT, OTHER_ADMIN)
    }
    assert all(e["status"] == 200 and e["parse_mode"] == "HTML" for e in received), received
    for report in reports:
        for part in report.parts:
            check(part)
    day, week = visible(reports[0]), visible(reports[1])
    assert "CyberVPN daily report" in day and "Sun 2026-12-06" in day
    assert "de-fra-1 — 87.5 % up, offline 3 h 00 min" not in day  # Wednesday's outage is not Sunday's
    assert ("us-nyc-1 — 99.0 % up, offline 15 min, 2 × down, 4 change(s) "
            "(09:00 offline, 09:05 online, 09:20 offline, 09:30 online)") in day  # fmt: skip
    assert "Top traffic:\n1. alice — 117.7 MiB\n2. bob — 22.4 MiB" in day
    assert "Week 2026-W49: Mon 2026-11-30 – Sun 2026-12-06 (UTC)" in week
    assert "de-fra-1 — 98.2 % up, offline 3 h 00 min, 1 × down, 2 change(s)" in week
    assert "USDT: 105 (±0 %; 105 the week before)" in week


def test_stored_names_reach_the_admin_escaped(
    runtime: Runtime, sandbox: RunningSandbox, clean_tables: sa.Engine
) -> None:
    # Given a username, a node name, a plan and an operation that look like HTML
    hostile = daily_stats(SUNDAY)
    hostile["users"]["top_traffic"] = [{"id": 1, "username": "<script>&", "used_traffic_bytes": 10}]
    hostile["bandwidth"]["by_node"] = {NODE_1: {"name": "de-<b>", "bytes": 5}}
    hostile["admin_operations"] = {"total": 1, "by_type": {"user.<i>disable</i>": 1}}
    store(runtime.redis, daily={SUNDAY: hostile},
          payments={SUNDAY: payment_stats(SUNDAY, count_by_plan={"vip & <u>gold</u>": 3})})  # fmt: skip
    node(runtime.redis, NODE_1, "de-<b>", status="offline", since=NOW - 3600)

    # When the daily report is sent
    [entry] = send(runtime, sandbox, daily(runtime), [ADMIN_CHAT])

    # Then Telegram took it, and shows the names literally, as text, never as markup
    assert entry["status"] == 200
    markup = str(entry["text"])
    assert "&lt;script&gt;&amp;" in markup and "<script>" not in markup
    assert "de-&lt;b&gt;" in markup and "vip &amp; &lt;u&gt;gold&lt;/u&gt;" in markup
    text = check(markup).text
    assert "1. <script>& — 10 B" in text
    assert "de-<b> — 5 B" in text and "vip & <u>gold</u> 3" in text and "user.<i>disable</i>: 1" in text


def test_a_day_with_hundreds_of_plans_still_renders_its_largest_and_counts_the_rest(
    runtime: Runtime, sandbox: RunningSandbox, clean_tables: sa.Engine
) -> None:
    # Given 200 plans with 64-character names: listed in full, the line alone exceeds a message
    plans = {f"plan {n:03d} {'x' * 55}": 1000 - n for n in range(200)}
    store(runtime.redis, daily={SUNDAY: daily_stats(SUNDAY)},
          payments={SUNDAY: payment_stats(SUNDAY, count_by_plan=plans)})  # fmt: skip

    # When the daily report is sent
    received = send(runtime, sandbox, daily(runtime), [ADMIN_CHAT])

    # Then it goes out, with the largest plans and how many more there are
    assert [e["status"] for e in received] == [200] * len(received)
    text = "\n".join(check(str(e["text"])).text for e in received)
    [line] = [line for line in text.splitlines() if line.startswith("By plan: ")]
    assert line.startswith(f"By plan: plan 000 {'x' * 55} 1000, plan 001") and line.endswith(" and 190 more")


def test_an_alert_severity_is_escaped_after_it_is_upper_cased(runtime: Runtime) -> None:
    from actors.reports.daily import _alerts

    [line] = _alerts([{"severity": "a&b", "title": "t", "fingerprint": "f", "count": 1, "first_at": 0}])[1:]
    assert "[A&amp;B]" in line and check(line).text.startswith("• [A&B] t")


def test_a_missing_day_is_shown_as_missing_never_as_zero(runtime: Runtime, clean_tables: sa.Engine) -> None:
    # Given two weeks of aggregates but Thursday's and Friday's, in both stores
    thursday, friday, saturday = (MONDAY + timedelta(days=n) for n in (3, 4, 5))
    two_weeks(runtime.redis, skip=(thursday, friday))
    healthy_fleet(runtime.redis)

    # When the reports of that Thursday, of the Saturday after it and of the week are built
    on_the_day, day_after, week = (
        visible(daily(runtime, thursday)),
        visible(daily(runtime, saturday)),
        visible(weekly(runtime)),
    )

    # Then each says what is missing; nothing counts it as zero
    assert "no data: cybervpn:stats:daily:2026-12-03 is missing" in on_the_day
    assert "no data: no payments stats stored for 2026-12-03" in on_the_day
    assert "New: 0" not in on_the_day and "Completed: 0" not in on_the_day
    assert "no data for the day before: changes not shown" in day_after
    assert "████··█ new users" in day_after and "· = no data for that day" in day_after
    assert "users: data for 5/7 days this week, 7/7 the week before" in week
    assert "USDT: 75 (▼ -28.6 %; 105 the week before)" in week
    assert ("No stored aggregate for analytics on Thu 2026-12-03, Fri 2026-12-04; "
            "payments on Thu 2026-12-03, Fri 2026-12-04") in week  # fmt: skip
    assert "Revenue in USDT fell" not in week  # more than 20 % down, but a gap is not a drop


def test_nodes_without_traffic_are_named(runtime: Runtime, clean_tables: sa.Engine) -> None:
    # Given a node that carried 0 bytes, and a node in the health history the bandwidth never saw
    stats = daily_stats(SUNDAY)
    stats["bandwidth"]["by_node"] = {
        NODE_1: {"name": "de-fra-1", "bytes": 42},
        NODE_2: {"name": "idle-1", "bytes": 0},
    }
    stats["bandwidth"]["hours_covered"] = 20
    store(runtime.redis, daily={SUNDAY: stats}, payments={})
    node(runtime.redis, "ghost-uuid", "ghost-1", status="online", since=NOW - 30 * 86_400)

    # When the daily report is built
    text = visible(daily(runtime))

    # Then both are named as without traffic, and the unrecorded hours are unknown, not zero
    assert "No traffic: ghost-1, idle-1" in text
    assert "only 20 of 24 hours recorded: the rest of the day's traffic is unknown, not zero" in text


def test_an_empty_week_renders_and_says_there_is_no_data(runtime: Runtime, clean_tables: sa.Engine) -> None:
    # Given nothing stored at all
    # When both reports are built
    day, week = daily(runtime), weekly(runtime)

    # Then each is one valid message saying there is no data, with no trend made up
    assert len(day.parts) == len(week.parts) == 1
    day_text, week_text = visible(day), visible(week)
    assert "no data: cybervpn:stats:daily:2026-12-06 is missing" in day_text
    assert "no data: no node health history for this period" in day_text
    assert "·······" in day_text
    for phrase in ("no daily stats stored for this week", "no payments stats stored for this week",
                   "no bandwidth stored for this week", "no node health history"):  # fmt: skip
        assert phrase in week_text
    assert "analytics on Mon 2026-11-30, Tue 2026-12-01" in week_text
    assert day.details == {"missing": ["analytics", "payments"]}


def test_a_long_report_is_split_between_sections_and_every_part_is_valid(
    runtime: Runtime, sandbox: RunningSandbox, clean_tables: sa.Engine
) -> None:
    # Given a day with 200 kinds of admin operation and 60 plans with long names
    operations = {f"operation.{n:03d}.{'x' * 50}": n for n in range(200)}
    stats = daily_stats(SUNDAY, admin_operations={"total": sum(operations.values()), "by_type": operations})
    plans = {f"plan {n:02d} {'&' * 40}": 1 for n in range(60)}
    store(runtime.redis, daily={SUNDAY: stats}, payments={SUNDAY: payment_stats(SUNDAY, count_by_plan=plans)})

    # When the daily report is built and sent
    report = daily(runtime)
    received = send(runtime, sandbox, report, [ADMIN_CHAT])

    # Then it comes in several parts, each accepted, valid, numbered and within Telegram's limit
    assert len(report.parts) >= 3
    assert [e["status"] for e in received] == [200] * len(report.parts)
    parsed = [check(part) for part in report.parts]
    assert all(p.length <= 4096 for p in parsed)
    assert [p.text.rsplit("\n", 1)[-1] for p in parsed] == [
        f"part {n}/{len(parsed)}" for n in range(1, len(parsed) + 1)
    ]
    # ... cut between sections: each section that fits a message is whole in one part
    for title in ("👥 Users", "💰 Revenue", "🖥 Nodes", "📶 Bandwidth", "📈 Last 7 days", "🚨 Alerts"):
        [holder] = [p.text for p in parsed if title in p.text]
        assert f"\n\n{title}" in holder or holder.startswith(title)
    # ... and the one longer than a message between its lines, its title repeated, no line lost
    pieces = [p.text for p in parsed if "🛠 Admin operations" in p.text]
    assert len(pieces) >= 2 and all("🛠 Admin operations (continued)" in p for p in pieces[1:])
    everything = "\n".join(pieces)
    assert all(f"• operation.{n:03d}." in everything for n in range(200))


def test_sending_the_same_report_again_sends_nothing_new(
    runtime: Runtime, sandbox: RunningSandbox, clean_tables: sa.Engine
) -> None:
    # Given a daily report sent to an admin
    two_weeks(runtime.redis)
    first = deliver(runtime.database, daily(runtime), [ADMIN_CHAT])
    runtime.service(drainer).drain()
    assert (first.queued, first.already_queued) == (1, 0)

    # When it is sent again — even cut differently, as if the data had changed — and to a new admin
    changed = Report("daily", "2026-12-06", ["one", "two"])
    again = deliver(runtime.database, changed, [ADMIN_CHAT, OTHER_ADMIN])
    runtime.service(drainer).drain()

    # Then the admin who had it gets nothing more; only the new admin gets it
    assert (again.queued, again.already_queued) == (2, 1)
    assert sorted((e["chat_id"], e["text"]) for e in sandbox.state.received()) == [
        (ADMIN_CHAT, daily(runtime).parts[0]), (OTHER_ADMIN, "one"), (OTHER_ADMIN, "two"),
    ]  # fmt: skip
    with clean_tables.connect() as conn:
        types = conn.execute(
            sa.text("SELECT notification_type, count(*) FROM notification_queue GROUP BY 1")
        ).all()
    assert types == [("report_daily", 3)]


def test_a_stored_aggregate_that_does_not_fit_its_shape_is_missing(
    runtime: Runtime, clean_tables: sa.Engine
) -> None:
    # Given a day whose analytics key is not JSON and whose payments key has a wrong shape
    runtime.redis.set(f"cybervpn:stats:daily:{SUNDAY}", "{not json")
    runtime.redis.set(f"cybervpn:stats:payments:{SUNDAY}", json.dumps({"date": "yesterday"}))

    # When the daily report is built
    report = daily(runtime)

    # Then both are shown as missing (and the report is still valid)
    assert report.details == {"missing": ["analytics", "payments"]}
    assert "no data: cybervpn:stats:daily:2026-12-06 is missing" in visible(report)
