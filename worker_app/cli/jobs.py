"""``worker-app jobs``: tracked on-demand jobs (see :mod:`worker_app.jobs`)."""

from __future__ import annotations

import json

import click

from models.worker import JOB_STATUSES
from worker_app import jobs as tracking
from worker_app.runtime import get_runtime


@click.group()
def jobs() -> None:
    """Tracked on-demand jobs: status, progress, result or error; cancel one."""


@jobs.command("list")
@click.option("--status", type=click.Choice(JOB_STATUSES))
@click.option("--actor")
@click.option("--limit", type=int, default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="JSON lines instead of a table.")
def jobs_list(status: str | None, actor: str | None, limit: int, as_json: bool) -> None:
    """The most recent jobs."""
    for job in tracking.list_jobs(get_runtime().database, status=status, actor=actor, limit=limit):
        if as_json:
            click.echo(json.dumps(tracking.as_dict(job), default=str))
            continue
        progress = job.progress or {}
        done = f"{progress.get('processed', '-')}/{progress.get('total', '-')}" if progress else ""
        click.echo(
            f"{job.job_id:<36} {job.created_at:%Y-%m-%d %H:%M:%S} {job.status:<9} {job.actor_name:<32} "
            f"{done:<12} {job.initiated_by or ''}"
        )


@jobs.command("show")
@click.argument("job_id")
def jobs_show(job_id: str) -> None:
    """One job with its arguments, progress, result or error, and times."""
    job = tracking.get_job(get_runtime().database, job_id)
    if job is None:
        raise click.ClickException(f"no job with id {job_id}")
    click.echo(json.dumps(tracking.as_dict(job), indent=2, default=str))


@jobs.command("cancel")
@click.argument("job_id")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
def jobs_cancel(job_id: str, yes: bool, as_json: bool) -> None:
    """Cancel a job or a broadcast (by its job / broadcast id).

    Not started: it never runs. Running: it stops at its next progress report. A broadcast: its
    pending rows are withdrawn (rows being sent finish). A deferred send: its queued row is
    withdrawn. Exit 1 if there was nothing to cancel or the id is unknown.
    """
    runtime = get_runtime()
    target = tracking.describe_job(runtime.database, job_id)
    if target is None:
        raise click.ClickException(f"no job or broadcast with id {job_id}")
    if not yes:
        click.confirm(f"Cancel {target}?", abort=True)
    result = tracking.cancel_job(runtime.database, job_id, by=tracking.cli_user(), redis_client=runtime.redis)
    click.echo(json.dumps(result.as_dict()) if as_json else result.detail)
    if result.outcome in (tracking.NOTHING_TO_CANCEL, tracking.UNKNOWN):
        raise SystemExit(1)
