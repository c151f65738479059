"""``worker-app cleanup <job> [--dry-run]``: what a cleanup job would delete, or run it now.

Without ``--dry-run`` the job runs here, in this process, at once (not enqueued: the operator sees
its counts when it ends, and no worker has to be free) with the same code, limits, lock and
archive as the scheduled run; a scheduled run that starts meanwhile finds the job's lock taken and
does nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import click

from worker_app.runtime import get_runtime

STALE_CACHE = "cleanup_stale_cache"


@click.group()
def cleanup() -> None:
    """Cleanup jobs: expired tokens, old audit and webhook logs, settled notifications, stale Redis keys."""


def _add(job: str, summary: str) -> None:
    @cleanup.command(job, short_help=summary, help=f"{summary} now, in this process (--dry-run: show "
                     "what would go, oldest and newest, and delete nothing).")  # fmt: skip
    @click.option("--dry-run", is_flag=True, help="Show what would be deleted; delete nothing.")
    def command(dry_run: bool) -> None:
        if dry_run:
            for line in _dry_run(job):
                click.echo(line)
            return
        click.echo(_outcome(_run_now(job)))


def _dry_run(job: str) -> list[str]:
    runtime = get_runtime()
    now = datetime.now(UTC)
    if job == STALE_CACHE:
        from actors.cleanup.stale_cache import plan as stale_plan

        return stale_plan(runtime.redis, runtime.settings, now).lines()
    from actors.cleanup.plan import plan

    return plan(runtime.database, job, runtime.settings, now).lines()


def _run_now(job: str) -> dict[str, Any]:
    import worker_app

    result: dict[str, Any] = worker_app.broker.get_actor(job).fn()
    return result


def _outcome(summary: dict[str, Any]) -> str:
    counts = ", ".join(f"{k} {v:,}" for k, v in summary.get("counts", {}).items()) or "nothing"
    line = f"{summary.get('job')}: {counts}"
    if "batches" in summary:
        line += f" in {summary['batches']} batch(es), longest {summary['longest_batch_s']:.3f} s"
    if summary.get("stopped"):
        line += f"; stopped early ({summary['stopped']}): the next run continues"
    return line


for _job, _summary in (
    ("cleanup_expired_tokens", "Delete expired and revoked refresh tokens"),
    ("cleanup_audit_logs", "Delete audit logs past retention (archived first if configured)"),
    ("cleanup_webhook_logs", "Delete webhook logs past retention"),
    ("cleanup_old_notifications", "Delete sent and failed notifications past retention"),
    ("cleanup_finished_jobs", "Delete settled jobs past retention"),
    (STALE_CACHE, "Remove stale Redis keys"),
):
    _add(_job, _summary)
