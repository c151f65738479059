"""``worker-app schedules``: every periodic job with last/next fire and the leader; ``run <job>``."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import click
import psycopg

from scheduler.consumers import ConsumedQueues
from scheduler.fire import backfill, conninfo, fire, process_name
from scheduler.status import JobStatus, ScheduleStatus, current_status
from scheduler.table import ScheduledJob, resolve_jobs
from worker_app.cli.errors import BadInput
from worker_app.errors import ConfigurationError
from worker_app.runtime import get_runtime
from worker_app.schedule_canary import read_canary
from worker_app.timefmt import utc_stamp


def _local_jobs() -> list[ScheduledJob]:
    import worker_app

    try:
        return resolve_jobs(get_runtime().settings, worker_app.broker.actors)
    except ConfigurationError as e:
        raise BadInput(str(e)) from None


@contextmanager
def _connect() -> Iterator[psycopg.Connection[Any]]:
    url = get_runtime().settings.database_url.get_secret_value()
    with psycopg.connect(conninfo(url), autocommit=True, connect_timeout=5) as conn:
        yield conn  # PostgreSQL unreachable: one line, exit 3 (cli/errors.py)


def _schedule_text(job: ScheduledJob) -> str:
    return job.schedule + (f" +≤{job.jitter_s}s" if job.jitter_s else "")


def _limit_text(job: ScheduledJob) -> str:
    return f"  ≤{job.batch_limit}/run" if job.batch_limit else ""


def _last_text(item: JobStatus) -> str:
    if item.last is None:
        return "-"
    state = item.last.status if item.last.kind == "scheduled" else f"{item.last.status} ({item.last.kind})"
    return f"{utc_stamp(item.last.scheduled_at)} {state}"


def _as_json(status: ScheduleStatus) -> dict[str, Any]:
    def fire_dict(item: JobStatus) -> dict[str, Any] | None:
        last = item.last
        if last is None:
            return None
        return {
            "scheduled_at": last.scheduled_at.isoformat(), "kind": last.kind, "status": last.status,
            "reason": last.reason, "message_id": last.message_id, "fired_at": last.fired_at.isoformat(),
            "started_at": last.started_at.isoformat() if last.started_at else None,
        }  # fmt: skip

    leader = status.leader
    return {
        "leader": leader.application_name if leader else None,
        "standbys": [h.application_name for h in status.standbys],
        "table_published_by": status.published_by,
        "jobs": [
            {
                "job": item.job.name,
                "actor": item.job.actor,
                "queue": item.job.queue,
                "schedule": item.job.schedule,
                "jitter_s": item.job.jitter_s,
                "grace_s": item.job.grace_s,
                "batch_limit": item.job.batch_limit,
                "enabled": item.job.enabled,
                "disabled_reason": item.job.disabled_reason,
                "last_fire": fire_dict(item),
                "next_fire_at": item.next_fire_at.isoformat() if item.next_fire_at else None,
            }
            for item in status.jobs
        ],
    }


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def schedules(ctx: click.Context, as_json: bool) -> None:
    """Every periodic job: schedule, enabled or why not, last and next fire; and the leader."""
    if ctx.invoked_subcommand is not None:
        return
    import worker_app

    try:
        status = current_status(get_runtime().settings, worker_app.broker.actors)
    except ConfigurationError as e:
        raise BadInput(str(e)) from None
    except psycopg.errors.UndefinedTable:
        raise click.ClickException("the scheduler tables are missing: run `worker-app db upgrade`") from None
    unconsumed = _unconsumed({item.job.queue for item in status.jobs if item.job.queue})
    if as_json:
        answer = _as_json(status)
        for job in answer["jobs"]:
            job["no_consumer"] = None if unconsumed is None else job["queue"] in unconsumed
        click.echo(json.dumps(answer, indent=2))
        return
    leader = status.leader
    click.echo(f"leader:   {leader.application_name if leader else 'none (no scheduler holds the lock)'}")
    if status.standbys:
        click.echo("standby:  " + ", ".join(h.application_name for h in status.standbys))
    source = (
        f"as published by {status.published_by} at {utc_stamp(status.published_at)}"
        if status.published_by
        else "this host's configuration (no scheduler has led yet)"
    )
    click.echo(f"table:    {source}")
    canary = read_canary(get_runtime().redis)
    if canary:
        click.echo(f"canary:   last ran {canary['started_at'][:19]} ({canary['lag_s']} s after its slot)")
    click.echo()
    click.echo(f"{'JOB':<30} {'SCHEDULE (UTC)':<18} {'LAST FIRE':<34} {'NEXT FIRE':<20}")
    for item in status.jobs:
        job = item.job
        if job.enabled:
            flag = f"  NO CONSUMER ({job.queue}): not fired" if unconsumed and job.queue in unconsumed else ""
            click.echo(
                f"{job.name:<30} {_schedule_text(job):<18} {_last_text(item):<34} "
                f"{utc_stamp(item.next_fire_at)}{_limit_text(job)}{flag}"
            )
        else:
            click.echo(f"{job.name:<30} {_schedule_text(job):<18} disabled: {job.disabled_reason}")


def _unconsumed(queues: set[str]) -> set[str] | None:
    """The queues no worker consumed within SCHEDULER_CONSUMER_GRACE_S (the scheduler skips their
    jobs); ``None`` when nothing is known (no worker has beaten, or Redis is down: all fire)."""
    runtime = get_runtime()
    known = ConsumedQueues(runtime.redis, runtime.settings.scheduler_consumer_grace_s).known()
    return None if known is None else {q for q in queues if q not in known}


@schedules.command("run")
@click.argument("job_name")
def run(job_name: str) -> None:
    """Enqueue JOB_NAME now (an operator's "run now"), through the scheduler's dedup and no-pile-up
    checks; exit 1 if it was not enqueued."""
    import worker_app

    jobs = {job.name: job for job in _local_jobs()}
    job = jobs.get(job_name)
    if job is None:
        raise click.ClickException(f"no periodic job named {job_name!r}; `worker-app schedules` lists them")
    if job.name not in worker_app.broker.actors and job.actor not in worker_app.broker.actors:
        raise click.ClickException(f"{job_name}: {job.disabled_reason}")
    # The microsecond keeps each operator's run its own slot: two runs in the same second are two
    # requests, and the second must meet the no-pile-up check, not a "duplicate" of the first.
    slot = datetime.now(UTC)
    with _connect() as conn:
        result = fire(
            conn, worker_app.broker.get_actor(job.actor), job.name, slot,
            kind="manual", fired_by=f"worker-app schedules run ({process_name()})",
            pending_stale_s=get_runtime().settings.scheduler_pending_stale_s,
        )  # fmt: skip
    if result.outcome == "enqueued":
        click.echo(
            f"enqueued {job.name} on {result.queue}: message {result.message_id} trace {result.trace_id}"
            + ("" if job.enabled else f" (note: its schedule is {job.disabled_reason})")
        )
        return
    click.echo(f"not enqueued: {job.name} @ {slot.isoformat()}: {result.reason}", err=True)
    sys.exit(1)


#: More slots than this in one backfill is refused: a typo in --from must not flood a queue.
MAX_BACKFILL_SLOTS = 10_000


def _moment(value: str, name: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadInput(f"{name}: expected an ISO 8601 time like 2026-12-07T03:00 (UTC unless an offset "
                       f"is given), not {value!r}") from None  # fmt: skip
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@schedules.command("backfill")
@click.argument("job_name")
@click.option(
    "--from", "start", required=True, help="First slot time (ISO 8601; UTC unless an offset is given)."
)
@click.option("--to", "end", default=None, help="Last slot time (default: now; not in the future).")
@click.option("--dry-run", is_flag=True, help="List the slots and what would happen, change nothing.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def backfill_command(job_name: str, start: str, end: str | None, dry_run: bool, yes: bool) -> None:
    """Enqueue the slots of JOB_NAME between --from and --to that never ran: each slot the schedule
    had in that range and that has no fire, or only a skipped one (missed, held back, no consumer),
    is enqueued once, with the scheduler's own slot key — a slot already fired is never repeated, and
    running the same backfill twice enqueues nothing the second time."""
    import worker_app

    job = {j.name: j for j in _local_jobs()}.get(job_name)
    if job is None:
        raise BadInput(f"no periodic job named {job_name!r}; `worker-app schedules` lists them")
    if job.actor not in worker_app.broker.actors:
        raise click.ClickException(f"{job_name}: {job.disabled_reason}")
    now = datetime.now(UTC)
    first, last = _moment(start, "--from"), (_moment(end, "--to") if end else now)
    if last > now:
        raise BadInput(f"--to {last.isoformat()} is in the future: only past slots can be backfilled")
    if first > last:
        raise BadInput(f"--from {first.isoformat()} is after --to {last.isoformat()}")
    trigger = job.trigger()
    slots = sorted({trigger.base_time(t) for t in trigger.fire_times(first, last, limit=MAX_BACKFILL_SLOTS)})
    if len(slots) >= MAX_BACKFILL_SLOTS:
        raise BadInput(f"{job_name} has {MAX_BACKFILL_SLOTS} or more slots in that range: narrow it")
    with _connect() as conn:
        rows = conn.execute(
            "SELECT scheduled_at, status FROM scheduler_fires WHERE job = %s AND scheduled_at = ANY(%s)",
            (job.name, slots),
        ).fetchall()
        known = {at: status for at, status in rows}
        todo = [s for s in slots if known.get(s, "skipped") == "skipped"]
        click.echo(f"{job.name} ({_schedule_text(job)}): {len(slots)} slot(s) from {utc_stamp(first)} to "
                   f"{utc_stamp(last)} UTC; {len(slots) - len(todo)} fired already, "
                   f"{len(todo)} to enqueue")  # fmt: skip
        if dry_run or not todo:
            for slot in todo:
                click.echo(
                    f"  would enqueue {slot.isoformat()}" + (" (was skipped)" if slot in known else "")
                )
            return
        if not yes:
            click.confirm(f"enqueue {len(todo)} slot(s) of {job.name}?", abort=True, err=True)
        actor = worker_app.broker.get_actor(job.actor)
        enqueued = 0
        for slot in todo:
            result = backfill(
                conn, actor, job.name, slot, fired_by=f"worker-app schedules backfill ({process_name()})"
            )
            enqueued += result.outcome == "enqueued"
            click.echo(
                f"  {slot.isoformat()}: {result.outcome}"
                + (f" message {result.message_id}" if result.message_id else "")
            )
    click.echo(f"enqueued {enqueued} slot(s) of {job.name}")
