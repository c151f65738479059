"""``worker-app notifications ...``: look at the notification queue, kick a drain, send, broadcast."""

from __future__ import annotations

import json
import time
from typing import Any

import click
from sqlalchemy import text

from actors.notifications.queue import DUE, drainer_slots
from worker_app.cli.errors import BadInput, Unreachable, outage_line
from worker_app.outages import outage_of
from worker_app.runtime import get_runtime

_STATUS = text(
    f"""
    SELECT count(*) FILTER (WHERE status = 'pending'),
           count(*) FILTER (WHERE {DUE}),
           count(*) FILTER (WHERE status = 'sent'),
           count(*) FILTER (WHERE status = 'failed'),
           extract(epoch FROM now() - min(greatest(created_at, scheduled_at)) FILTER (WHERE {DUE}))
    FROM notification_queue
    """
)


@click.group()
def notifications() -> None:
    """Telegram notifications: queue status, drains, sends and broadcasts."""


def queue_status() -> dict[str, object]:
    """Row counts by status, how many are due now and how late the oldest due row is."""
    runtime = get_runtime()
    with runtime.database.transaction() as session:
        pending, due, sent, failed, oldest = session.execute(_STATUS).one()
    return {
        "pending": pending, "due_now": due, "sent": sent, "failed": failed,
        "oldest_due_s": round(float(oldest), 1) if oldest is not None else None,
        "drains_running": runtime.service(drainer_slots).holders(),
        "telegram_paused_s": runtime.telegram_sender.limiter.paused_for(),
    }  # fmt: skip


@notifications.command("status")
def status() -> None:
    """Counts by status, rows due now, drains running and any Telegram 429 pause."""
    click.echo(json.dumps(queue_status(), indent=2))


@notifications.command("drain")
@click.option("--wait", "wait_s", type=float, default=0, help="Wait up to this long for no row to be due.")
def drain(wait_s: float) -> None:
    """Enqueue process_notification_queue now (the scheduler does it every 30 s)."""
    message = _actor("process_notification_queue").send()
    click.echo(f"enqueued process_notification_queue ({message.message_id})")
    deadline = time.monotonic() + wait_s
    while wait_s and time.monotonic() < deadline and queue_status()["due_now"]:
        time.sleep(0.5)
    if wait_s:
        current = queue_status()
        click.echo(json.dumps(current))
        if current["due_now"]:
            raise click.ClickException(f"{current['due_now']} row(s) still due after {wait_s:.0f}s")


@notifications.command("send")
@click.argument("telegram_id", type=int)
@click.argument("message")
@click.option("--type", "notification_type", default="manual", show_default=True)
@click.option("--parse-mode", default="HTML", show_default=True, help="HTML, MarkdownV2, Markdown or none.")
@click.option(
    "--wait", "wait_s", type=float, default=30, show_default=True, help="Seconds to wait for the result."
)
def send(telegram_id: int, message: str, notification_type: str, parse_mode: str, wait_s: float) -> None:
    """Send one message now through send_notification and print its result."""
    mode = None if parse_mode.lower() == "none" else parse_mode
    sent = _enqueue(_actor("send_notification"), (telegram_id, message, notification_type, mode))
    click.echo(f"enqueued send_notification (job {sent.message_id})")
    if wait_s:
        click.echo(json.dumps(_result(sent, wait_s)))


def _actor(name: str) -> Any:
    """The notifications actor ``name``, as ``import worker_app`` registered it on the broker."""
    import worker_app

    return worker_app.broker.get_actor(name)


def _enqueue(actor: Any, args: tuple[Any, ...]) -> Any:
    """Check ``args`` as the API does (exit 2 naming the bad one), then enqueue a tracked job."""
    from worker_app.arguments import mismatch
    from worker_app.jobs import cli_user, enqueue_job

    reason = mismatch(actor.actor_name, actor.fn, args, {}, strict=False)
    if reason is not None:
        raise BadInput(reason)
    return enqueue_job(get_runtime().database, actor, args, initiated_by=cli_user())


def _result(sent: Any, wait_s: float) -> Any:
    """The job's stored result; one line (exit 1, or 3 for Redis) when it cannot be had."""
    from dramatiq.results import ResultFailure, ResultTimeout

    job = sent.message_id
    try:
        return sent.get_result(block=True, timeout=int(wait_s * 1000))
    except ResultTimeout:
        raise click.ClickException(
            f"no result within {wait_s:g} s; the job goes on: worker-app jobs show {job}"
        ) from None
    except ResultFailure as e:
        raise click.ClickException(f"job {job} failed: {e}; worker-app jobs show {job}") from None
    except Exception as e:
        outage = outage_of(e)
        if outage is None:
            raise
        raise Unreachable(
            f"job {job} was enqueued, but its result cannot be read: {outage_line(outage)}; "
            f"worker-app jobs show {job}"
        ) from None


@notifications.command("broadcast")
@click.argument("telegram_ids", type=int, nargs=-1, required=True)
@click.option("--message", "-m", required=True)
@click.option("--type", "notification_type", default="broadcast", show_default=True)
@click.option("--at", "scheduled_at", default=None,
              help="Start sending at this time (ISO 8601, UTC unless an offset; within a year).")  # fmt: skip
def broadcast(
    telegram_ids: tuple[int, ...], message: str, notification_type: str, scheduled_at: str | None
) -> None:
    """Queue MESSAGE for every TELEGRAM_ID, now or --at a later time; prints the broadcast id (its
    progress: `progress ID`; a scheduled one: `broadcasts`, `send-now ID`, `worker-app jobs cancel ID`)."""
    from actors.notifications.broadcast import start_time
    from worker_app.telegram.text import NotificationRejected

    try:
        start_time(scheduled_at)
    except NotificationRejected as e:
        raise BadInput(str(e)) from None
    args = (list(telegram_ids), message, notification_type, "HTML", scheduled_at)
    sent = _enqueue(_actor("broadcast_message"), args)
    when = f", sending from {scheduled_at}" if scheduled_at else ""
    click.echo(f"broadcast {sent.message_id}: {len(telegram_ids)} chat id(s) queued for insertion{when}")


@notifications.command("broadcasts")
@click.option("--state", type=click.Choice(["scheduled", "sending", "done", "cancelled", "all"]),
              default="all", show_default=True)  # fmt: skip
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="JSON lines instead of a table.")
def broadcasts(state: str, limit: int, as_json: bool) -> None:
    """Broadcasts, the latest first: state (scheduled, sending, done, cancelled), start, totals."""
    from actors.notifications.scheduled import list_broadcasts

    rows = list_broadcasts(get_runtime().database, None if state == "all" else state, limit)  # type: ignore[arg-type]
    if as_json:
        for row in rows:
            click.echo(json.dumps(row.as_dict()))
        return
    click.echo(f"{'BROADCAST':<38} {'STATE':<10} {'STARTS (UTC)':<20} {'TOTAL':>7} {'SENT':>7} {'FAILED':>7}")
    for row in rows:
        start = row.scheduled_at or row.created_at
        sent = "-" if row.sent is None else str(row.sent)
        failed = "-" if row.failed is None else str(row.failed)
        click.echo(f"{row.broadcast_id:<38} {row.state:<10} {start:%Y-%m-%d %H:%M:%S} "
                   f"{row.total:>7} {sent:>7} {failed:>7}")  # fmt: skip
    if not rows:
        click.echo("no broadcast", err=True)


@notifications.command("send-now")
@click.argument("broadcast_id")
def send_now_command(broadcast_id: str) -> None:
    """Start a scheduled broadcast now instead of at its time (exit 1 if it is not scheduled any more)."""
    from actors.notifications.scheduled import send_now

    moved = send_now(get_runtime().database, broadcast_id)
    if moved is None:
        raise click.ClickException(
            f"{broadcast_id} is not a scheduled broadcast (unknown, started, done or cancelled)"
        )
    click.echo(f"broadcast {broadcast_id}: {moved} row(s) due now")


@notifications.command("progress")
@click.argument("broadcast_id")
def progress(broadcast_id: str) -> None:
    """A broadcast's progress, and its report once settled (Redis ``cybervpn:broadcast:<id>``)."""
    from actors.notifications.broadcast import read_progress

    found = read_progress(get_runtime().redis, broadcast_id)
    if not found:
        raise click.ClickException(
            f"no progress for broadcast {broadcast_id} (unknown, or older than 7 days)"
        )
    click.echo(json.dumps(found, indent=2))
