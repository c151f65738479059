"""Every periodic job in one table (ARCHITECTURE.md §4–5), and how env overrides resolve it.

A schedule is one of:

* ``every 30s`` / ``every 5m`` / ``every 6h`` / ``every 1d`` — an interval on a grid anchored at
  2000-01-01 00:00 UTC, so every replica computes the same fire times;
* a number of seconds (``30``), seed-style, meaning ``every 30s``;
* a 5-field crontab ``minute hour day month day-of-week`` in UTC. Day-of-week keeps crontab's
  meaning (0 and 7 = Sunday); it is translated to day names, because APScheduler numbers Monday 0;
* ``off``.

Env overrides, read through :class:`worker_app.config.Settings`:

* ``SCHEDULE_<JOB>`` — a schedule as above (``off`` disables the job);
* ``SCHEDULE_<JOB>_JITTER_S`` — extra delay of up to N seconds, the same on every replica;
* ``SCHEDULE_<JOB>_GRACE_S`` — how late a fire may still run (later ones are recorded as missed);
* ``SCHEDULE_<JOB>_IMMEDIATE`` — ``1`` fires the job once when a scheduler process first leads
  (``SCHEDULER_IMMEDIATE=1`` does it for every job);
* ``<JOB>_BATCH_LIMIT`` — the most items one run takes (jobs marked ``batched`` only; the rest wait
  for the next run). The worker running the job reads it (``Settings.batch_limit``).

A job whose actor does not exist yet is listed as disabled with the reason; it comes alive when its
actor lands. A bad override stops start-up with one line naming the variable.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from worker_app.config import BATCH_LIMIT_SUFFIX, Settings
from worker_app.errors import ConfigurationError

#: The grid every interval schedule is anchored on.
ANCHOR = datetime(2000, 1, 1, tzinfo=UTC)
#: Default grace of cron jobs: a daily cleanup missed during a one-hour outage still runs once.
CRON_GRACE_S = 3600


@dataclass(frozen=True)
class Job:
    """One row of the table: the job name, its schedule, and the actor it sends (default: same name)."""

    name: str
    schedule: str
    jitter_s: int = 0
    actor: str = ""
    grace_s: int | None = None
    immediate: bool = False
    #: The job works through a set of items and honours ``<JOB>_BATCH_LIMIT``.
    batched: bool = False

    @property
    def actor_name(self) -> str:
        return self.actor or self.name


# fmt: off
JOBS: tuple[Job, ...] = (
    #   job                              schedule (UTC)         jitter        <JOB>_BATCH_LIMIT
    # notifications
    Job("process_notification_queue",    "every 30s",                         batched=True),
    # subscriptions
    Job("check_expiring_subscriptions",  "0 * * * *",           jitter_s=60,  batched=True),
    Job("disable_expired_users",         "every 15m",           jitter_s=30,  batched=True),
    Job("reset_monthly_traffic",         "0 0 1 * *",           grace_s=86_400),
    Job("auto_renew_subscriptions",      "every 30m",           jitter_s=60,  batched=True),
    # monitoring
    Job("check_server_health",           "every 2m"),
    Job("collect_bandwidth_snapshots",   "every 5m"),
    Job("check_external_services",       "every 60s",           immediate=True),
    Job("check_anomalies",               "every 5m"),
    Job("scheduler_canary",              "every 60s",           immediate=True),
    Job("sample_queue_depths",           "every 60s"),
    # payments
    Job("verify_pending_payments",       "every 5m",            jitter_s=20,  batched=True),
    Job("retry_failed_webhooks",         "every 30m",           jitter_s=60,  batched=True),
    Job("aggregate_financial_stats",     "30 0 * * *"),
    # analytics
    Job("aggregate_daily_stats",         "5 0 * * *"),
    Job("aggregate_bandwidth_hourly",    "5 * * * *"),
    Job("update_realtime_metrics",       "every 30s"),
    # cleanup
    Job("cleanup_old_notifications",     "0 1 * * *",                         batched=True),
    Job("cleanup_expired_tokens",        "0 2 * * *",                         batched=True),
    Job("cleanup_audit_logs",            "0 3 * * sun",                       batched=True),
    Job("cleanup_webhook_logs",          "0 3 * * mon",                       batched=True),
    Job("cleanup_finished_jobs",         "30 3 * * *",                        batched=True),
    Job("cleanup_stale_cache",           "0 4 * * *"),
    Job("cleanup_expired_exports",       "15 * * * *"),
    # sync
    Job("sync_server_geolocations",      "every 6h",            jitter_s=120),
    Job("sync_user_stats",               "every 10m",           jitter_s=30),
    Job("sync_node_configs",             "every 30m",           jitter_s=60),
    # reports
    Job("send_daily_report",             "0 6 * * *"),
    Job("send_weekly_report",            "0 7 * * mon"),
)
# fmt: on

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
_EVERY = re.compile(r"^every\s+(\d+)\s*([smhd])$")
_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


class FireTrigger(BaseTrigger):  # type: ignore[misc]
    """A job's trigger plus a jitter every replica computes alike (a hash of job and time).

    APScheduler's own jitter is random per process, which would give two replicas different fire
    times for the same slot. :meth:`base_time` maps a fire time back to its un-jittered slot — the
    identity of the fire.
    """

    def __init__(self, base: BaseTrigger, job: str, jitter_s: int) -> None:
        self.base = base
        self.job = job
        self.jitter_s = jitter_s
        self._bases: OrderedDict[datetime, datetime] = OrderedDict()
        self._lock = threading.Lock()

    def jitter(self, slot: datetime) -> timedelta:
        if self.jitter_s <= 0:
            return timedelta(0)
        digest = hashlib.sha256(f"{self.job}|{slot.isoformat()}".encode()).digest()
        return timedelta(milliseconds=int.from_bytes(digest[:8], "big") % (self.jitter_s * 1000 + 1))

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime | None:
        previous_slot = self.base_time(previous_fire_time) if previous_fire_time else None
        slot: datetime | None = self.base.get_next_fire_time(previous_slot, now)
        if slot is None:
            return None
        fire = slot + self.jitter(slot)
        with self._lock:
            self._bases[fire] = slot
            while len(self._bases) > 64:
                self._bases.popitem(last=False)
        return fire

    def base_time(self, fire_time: datetime) -> datetime:
        """The un-jittered slot of ``fire_time`` (a fire time this trigger produced)."""
        with self._lock:
            return self._bases.get(fire_time, fire_time)

    def fire_times(self, start: datetime, end: datetime, limit: int = 100_000) -> list[datetime]:
        """Fire times in ``[start, end]`` (at most ``limit``, the latest kept)."""
        times: list[datetime] = []
        fire = self.get_next_fire_time(None, start)
        while fire is not None and fire <= end:
            times.append(fire)
            if len(times) > limit:
                times.pop(0)
            fire = self.get_next_fire_time(fire, fire)
        return times

    def __str__(self) -> str:
        return f"{self.base}" + (f" + jitter {self.jitter_s}s" if self.jitter_s else "")


@dataclass(frozen=True)
class ScheduledJob:
    """A job after env overrides and actor lookup: what the scheduler runs and the CLI shows."""

    name: str
    actor: str
    queue: str | None
    schedule: str
    jitter_s: int
    grace_s: int
    immediate: bool
    enabled: bool
    disabled_reason: str | None
    overridden_by: str | None
    #: ``<JOB>_BATCH_LIMIT`` (``None``: unset, or the job takes no batch).
    batch_limit: int | None = None

    def trigger(self) -> FireTrigger:
        """A fresh trigger for this job (each caller gets its own slot memory)."""
        base = parse_schedule(self.schedule, f"schedule of {self.name}")
        assert base is not None, f"{self.name} has no schedule"
        return FireTrigger(base, self.name, self.jitter_s)


def env_name(job: str, suffix: str = "") -> str:
    return f"SCHEDULE_{job.upper()}{suffix}"


def parse_schedule(text: str, where: str) -> BaseTrigger | None:
    """A trigger for ``text``, ``None`` for ``off``; :class:`ConfigurationError` naming ``where``."""
    value = " ".join(text.strip().lower().split())
    if value == "off":
        return None
    if value.isdigit():
        value = f"every {value}s"
    every = _EVERY.match(value)
    if every:
        seconds = int(every.group(1)) * _UNITS[every.group(2)]
        if seconds < 1:
            raise ConfigurationError(f"{where}: {text!r}: an interval must be at least 1 second")
        return IntervalTrigger(seconds=seconds, start_date=ANCHOR, timezone=UTC)
    fields = value.split(" ")
    if len(fields) != 5:
        raise ConfigurationError(
            f"{where}: {text!r} is not a schedule; expected a 5-field crontab "
            "(minute hour day month day-of-week, UTC), 'every 30s' / 'every 5m', "
            "a number of seconds, or 'off'"
        )
    minute, hour, day, month, day_of_week = fields
    try:
        return CronTrigger(
            minute=minute,
            hour=hour,
            day=day,
            month=month,
            day_of_week=_crontab_days(day_of_week),
            timezone=UTC,
        )
    except ValueError as e:
        names = ("minute", "hour", "day", "month", "day-of-week")
        bad = next((n for n, f in zip(names, fields, strict=True) if not _field_ok(n, f)), None)
        field = f" ({bad} field)" if bad else ""
        raise ConfigurationError(f"{where}: {text!r} is not a valid crontab{field}: {e}") from None


def _field_ok(name: str, value: str) -> bool:
    try:
        if name == "day-of-week":
            CronTrigger(day_of_week=_crontab_days(value), timezone=UTC)
        else:
            CronTrigger(**{name: value}, timezone=UTC)
    except ValueError:
        return False
    return True


def _crontab_days(field: str) -> str:
    """Crontab's day-of-week (0/7 = Sunday, names allowed) as APScheduler day names."""
    if field in ("*", "?"):
        return "*"
    days: set[int] = set()
    for part in field.split(","):
        spec, _, step_text = part.partition("/")
        step = int(step_text) if step_text.isdigit() else None
        if (step_text and step is None) or step == 0:
            raise ValueError(f"day-of-week step {step_text!r} is not a positive number")
        if spec in ("*", ""):
            first, last = 0, 6
        elif "-" in spec:
            low, high = spec.split("-", 1)
            first, last = _day_number(low), _day_number(high)
            if high in ("7",):
                last = 7
        else:
            first = last = _day_number(spec)
            if step:
                last = 6
        if last < first:
            raise ValueError(f"day-of-week range {spec!r} runs backwards")
        days.update(d % 7 for d in range(first, last + 1, step or 1))
    return ",".join(_DAY_NAMES[d] for d in sorted(days))


def _day_number(token: str) -> int:
    if token.isdigit() and 0 <= int(token) <= 7:
        return int(token) % 7 if token != "7" else 0
    if token[:3] in _DAY_NAMES:
        return _DAY_NAMES.index(token[:3])
    raise ValueError(f"day-of-week {token!r} is not 0-7 or a day name")


def _default_grace(trigger: BaseTrigger) -> int:
    if isinstance(trigger, IntervalTrigger):
        return int(min(max(trigger.interval_length, 15), CRON_GRACE_S))
    return CRON_GRACE_S


def _shortest_gap_s(trigger: BaseTrigger) -> float:
    """The shortest time between two fires of ``trigger`` (sampled over its next few fires)."""
    if isinstance(trigger, IntervalTrigger):
        return float(trigger.interval_length)
    fire = trigger.get_next_fire_time(None, ANCHOR)
    gaps: list[float] = []
    for _ in range(8):
        following = trigger.get_next_fire_time(fire, fire + timedelta(microseconds=1))
        if fire is None or following is None:
            break
        gaps.append((following - fire).total_seconds())
        fire = following
    return min(gaps) if gaps else float("inf")


def _fit_jitter(trigger: BaseTrigger, jitter_s: int, var: str | None) -> int:
    """Jitter must stay under half the gap between fires, or fires would overtake each other.

    A jitter set by ``var`` that is too large is an error naming it; the table's default jitter is
    shrunk to fit a shorter schedule set by env.
    """
    limit = int(_shortest_gap_s(trigger) // 2)
    if jitter_s <= limit:
        return jitter_s
    if var is not None:
        raise ConfigurationError(
            f"{var}: {jitter_s} s is more than half the time between fires (max {limit})"
        )
    return limit


def _int_env(env: dict[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigurationError(f"{name}: {raw!r} is not a whole number of seconds") from None
    if value < minimum:
        raise ConfigurationError(f"{name}: {raw!r} must be at least {minimum}")
    return value


def _bool_env(env: dict[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(f"{name}: {raw!r} is not a boolean (expected 1/0, true/false)")


_SUFFIXES = ("_JITTER_S", "_GRACE_S", "_IMMEDIATE")


def resolve_jobs(
    settings: Settings, actors: dict[str, Any], jobs: tuple[Job, ...] = JOBS
) -> list[ScheduledJob]:
    """Apply ``SCHEDULE_*`` overrides and look up each actor (``actors``: name → Dramatiq actor).

    Raises :class:`ConfigurationError` naming the variable for a bad value or an unknown job.
    """
    env = settings.schedule_env
    known = {env_name(job.name) for job in jobs}
    for name in env:
        base = next((name.removesuffix(s) for s in _SUFFIXES if name.endswith(s)), name)
        if base not in known:
            raise ConfigurationError(
                f"{name}: no periodic job named {base.removeprefix('SCHEDULE_').lower()!r} "
                "(`worker-app schedules` lists them)"
            )
    _check_batch_limits(settings, jobs)
    resolved: list[ScheduledJob] = []
    for job in jobs:
        var = env_name(job.name)
        schedule = " ".join(env.get(var, job.schedule).split())
        trigger = parse_schedule(schedule, var if var in env else f"schedule of {job.name}")
        jitter_var = env_name(job.name, "_JITTER_S")
        jitter_s = _int_env(env, jitter_var, job.jitter_s)
        if trigger is not None and jitter_s:
            jitter_s = _fit_jitter(trigger, jitter_s, jitter_var if jitter_var in env else None)
        grace_default = (
            job.grace_s if job.grace_s is not None else (_default_grace(trigger) if trigger else 0)
        )
        grace_s = _int_env(env, env_name(job.name, "_GRACE_S"), grace_default, minimum=1 if trigger else 0)
        immediate = _bool_env(
            env, env_name(job.name, "_IMMEDIATE"), job.immediate or settings.scheduler_immediate
        )
        actor = actors.get(job.actor_name)
        reason = None
        if trigger is None:
            reason = f"{var}=off"
        elif actor is None:
            reason = f"actor {job.actor_name!r} does not exist yet"
        resolved.append(
            ScheduledJob(
                name=job.name,
                actor=job.actor_name,
                queue=getattr(actor, "queue_name", None),
                schedule=schedule,
                jitter_s=jitter_s,
                grace_s=grace_s,
                immediate=immediate,
                enabled=reason is None,
                disabled_reason=reason,
                overridden_by=var if var in env else None,
                batch_limit=settings.batch_limit(job.name) if job.batched else None,
            )
        )
    return resolved


def _check_batch_limits(settings: Settings, jobs: tuple[Job, ...]) -> None:
    """A ``<JOB>_BATCH_LIMIT`` naming a periodic job that takes no batch stops start-up, naming it
    (one naming no job at all is another program's variable, left alone)."""
    by_name = {job.name: job for job in jobs}
    for name, value in settings.batch_limit_env.items():
        job = by_name.get(name.removesuffix(BATCH_LIMIT_SUFFIX).lower())
        if job is not None and not job.batched and value.strip():  # empty: unset, as batch_limit reads it
            takers = ", ".join(j.name for j in jobs if j.batched)
            raise ConfigurationError(f"{name}: {job.name} takes no batch to limit (jobs that do: {takers})")
