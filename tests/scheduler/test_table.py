"""The job table, schedule parsing and env overrides (no services needed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from scheduler.table import JOBS, FireTrigger, Job, parse_schedule, resolve_jobs
from worker_app.config import load_settings
from worker_app.errors import ConfigurationError

TABLE = (
    Job("tick", "every 1s", batched=True),
    Job("nightly", "0 3 * * *", jitter_s=60),
    Job("future", "every 5m"),
)
ACTORS: dict[str, Any] = {"tick": object(), "nightly": object()}


def resolve(**env: str) -> dict[str, Any]:
    settings = load_settings(env)
    return {job.name: job for job in resolve_jobs(settings, ACTORS, TABLE)}


def test_the_table_covers_every_periodic_job_of_the_architecture() -> None:
    names = {job.name for job in JOBS}
    assert len(names) == len(JOBS), "duplicate job names"
    assert {"process_notification_queue", "check_server_health", "verify_pending_payments",
            "reset_monthly_traffic", "cleanup_audit_logs", "send_weekly_report"} <= names  # fmt: skip
    for job in JOBS:
        assert parse_schedule(job.schedule, job.name) is not None


def test_jobs_without_an_actor_are_disabled_with_the_reason() -> None:
    jobs = resolve()
    assert jobs["tick"].enabled and jobs["nightly"].enabled
    assert not jobs["future"].enabled
    assert jobs["future"].disabled_reason == "actor 'future' does not exist yet"


def test_overrides_change_the_schedule_and_off_disables() -> None:
    jobs = resolve(SCHEDULE_TICK="off", SCHEDULE_NIGHTLY="30 4 * * *", SCHEDULE_NIGHTLY_JITTER_S="0")
    assert not jobs["tick"].enabled and jobs["tick"].disabled_reason == "SCHEDULE_TICK=off"
    nightly = jobs["nightly"]
    assert (nightly.schedule, nightly.jitter_s, nightly.overridden_by) == (
        "30 4 * * *",
        0,
        "SCHEDULE_NIGHTLY",
    )
    after = datetime(2026, 1, 5, 12, tzinfo=UTC)
    assert nightly.trigger().get_next_fire_time(None, after) == datetime(2026, 1, 6, 4, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("61 * * * *", "SCHEDULE_NIGHTLY: '61 * * * *' is not a valid crontab (minute field)"),
        ("0 25 * * *", "(hour field)"),
        ("* * * *", "is not a schedule; expected a 5-field crontab"),
        ("0 3 * * 8", "(day-of-week field)"),
        ("every 0s", "an interval must be at least 1 second"),
        ("sometimes", "is not a schedule"),
    ],
)
def test_a_bad_schedule_names_the_variable(value: str, expected: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        resolve(SCHEDULE_NIGHTLY=value)
    assert "SCHEDULE_NIGHTLY" in str(caught.value)
    assert expected in str(caught.value)


def test_bad_jitter_grace_immediate_and_unknown_jobs_name_the_variable() -> None:
    for env, expected in [
        ({"SCHEDULE_TICK_JITTER_S": "soon"}, "SCHEDULE_TICK_JITTER_S: 'soon' is not a whole number"),
        ({"SCHEDULE_TICK_GRACE_S": "0"}, "SCHEDULE_TICK_GRACE_S: '0' must be at least 1"),
        ({"SCHEDULE_TICK_IMMEDIATE": "maybe"}, "SCHEDULE_TICK_IMMEDIATE: 'maybe' is not a boolean"),
        ({"SCHEDULE_TIKC": "every 5s"}, "SCHEDULE_TIKC: no periodic job named 'tikc'"),
    ]:
        with pytest.raises(ConfigurationError, match=expected):
            resolve(**env)


def test_a_batch_limit_reaches_its_job_and_a_bad_one_names_the_variable() -> None:
    jobs = resolve(TICK_BATCH_LIMIT="500", OTHER_PROGRAM_BATCH_LIMIT="whatever")
    assert (jobs["tick"].batch_limit, jobs["nightly"].batch_limit) == (500, None)
    assert load_settings({"TICK_BATCH_LIMIT": " 7 "}).batch_limit("tick") == 7
    assert load_settings({}).batch_limit("tick") is None
    assert resolve(NIGHTLY_BATCH_LIMIT=" ")["nightly"].batch_limit is None  # empty is unset, for any job
    for env, expected in [
        ({"TICK_BATCH_LIMIT": "lots"}, "TICK_BATCH_LIMIT: 'lots' is not a whole number of items"),
        ({"TICK_BATCH_LIMIT": "0"}, "TICK_BATCH_LIMIT: '0' must be between 1 and 10000000"),
        (
            {"NIGHTLY_BATCH_LIMIT": "10"},
            r"NIGHTLY_BATCH_LIMIT: nightly takes no batch to limit \(jobs that do: tick\)",
        ),
    ]:
        with pytest.raises(ConfigurationError, match=expected):
            resolve(**env)


def test_immediate_per_job_and_global() -> None:
    assert resolve(SCHEDULE_TICK_IMMEDIATE="1")["tick"].immediate
    assert not resolve(SCHEDULE_TICK_IMMEDIATE="1")["nightly"].immediate
    assert all(job.immediate for job in resolve(SCHEDULER_IMMEDIATE="true").values())


def test_seed_style_seconds_and_every_forms() -> None:
    assert resolve(SCHEDULE_TICK="45")["tick"].trigger().base.interval_length == 45
    assert resolve(SCHEDULE_TICK="every 2m")["tick"].trigger().base.interval_length == 120


def test_crontab_day_of_week_keeps_crontab_meaning() -> None:
    """APScheduler numbers Monday 0; a crontab's 0 (and 7) is Sunday and must stay Sunday."""
    after = datetime(2026, 11, 23, tzinfo=UTC)  # a Monday
    for text in ("0 3 * * 0", "0 3 * * 7", "0 3 * * sun"):
        fire = FireTrigger(parse_schedule(text, "x"), "j", 0).get_next_fire_time(None, after)
        assert fire is not None and fire.strftime("%a %H:%M") == "Sun 03:00", text
    weekdays = FireTrigger(parse_schedule("0 9 * * 1-5", "x"), "j", 0)
    fires = weekdays.fire_times(after, after + timedelta(days=7))
    assert [f.strftime("%a") for f in fires] == ["Mon", "Tue", "Wed", "Thu", "Fri"]


def test_interval_slots_and_jitter_are_the_same_on_every_replica() -> None:
    """Two processes started at different moments compute identical fire times (the fire identity)."""
    a = FireTrigger(parse_schedule("every 30s", "x"), "job", 10)
    b = FireTrigger(parse_schedule("every 30s", "x"), "job", 10)
    start = datetime(2026, 11, 23, 10, 0, 7, tzinfo=UTC)
    times_a = a.fire_times(start, start + timedelta(minutes=5))
    times_b = b.fire_times(start + timedelta(seconds=30), start + timedelta(minutes=5))
    assert times_a[1:] == times_b
    slots = [a.base_time(t) for t in times_a]
    assert all(s.second in (0, 30) and s.microsecond == 0 for s in slots)
    assert all(timedelta(0) <= t - s <= timedelta(seconds=10) for t, s in zip(times_a, slots, strict=True))
    assert len({t - s for t, s in zip(times_a, slots, strict=True)}) > 1, "jitter varies from slot to slot"
    other_job = FireTrigger(parse_schedule("every 30s", "x"), "other", 10)
    assert other_job.fire_times(start, start + timedelta(minutes=5)) != times_a


def test_jitter_never_lets_fires_overtake_each_other() -> None:
    """The table's 60 s jitter shrinks to fit a 10 s override; an explicit one that is too large fails."""
    assert resolve(SCHEDULE_NIGHTLY="every 10s")["nightly"].jitter_s == 5
    assert resolve()["nightly"].jitter_s == 60
    with pytest.raises(
        ConfigurationError, match=r"SCHEDULE_NIGHTLY_JITTER_S: 30 s is more than half .* \(max 5\)"
    ):
        resolve(SCHEDULE_NIGHTLY="every 10s", SCHEDULE_NIGHTLY_JITTER_S="30")
    trigger = resolve(SCHEDULE_NIGHTLY="every 10s")["nightly"].trigger()
    start = datetime(2026, 11, 23, tzinfo=UTC)
    times = trigger.fire_times(start, start + timedelta(minutes=10))
    assert times == sorted(times) and len(times) == 60
