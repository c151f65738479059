"""``worker-app dlq``: list, show, replay, discard and export dead letters (see :mod:`worker_app.dlq`)."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import click

from worker_app import dlq as ops
from worker_app.runtime import get_runtime

F = TypeVar("F", bound=Callable[..., Any])
_RELATIVE = re.compile(r"^(\d+)\s*([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def _parse_time(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    """``2026-11-23T10:00`` (UTC unless an offset is given) or ``30m`` / ``2h`` / ``7d`` ago."""
    if value is None:
        return None
    relative = _RELATIVE.match(value.strip())
    if relative:
        return datetime.now(UTC) - timedelta(**{_UNITS[relative.group(2)]: int(relative.group(1))})
    try:
        return ops.parse_iso(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r}: expected an ISO time (2026-11-23T10:00) or 30m / 2h / 7d"
        ) from None


def filters(func: F) -> F:
    """The options every dlq command filters by."""
    options = [
        click.option("--queue", help="Only this queue."),
        click.option("--actor", help="Only this actor."),
        click.option("--error", help="Exception type or message contains this text (case-insensitive)."),
        click.option(
            "--since", callback=_parse_time, help="Dead at or after: ISO time, or 30m / 2h / 7d ago."
        ),
        click.option("--until", callback=_parse_time, help="Dead before: ISO time, or 30m / 2h / 7d ago."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _filter(ids: tuple[int, ...] = (), status: str = "dead", **given: Any) -> ops.DeadLetterFilter:
    return ops.DeadLetterFilter(
        ids=ids, queue=given.get("queue"), actor=given.get("actor"), error=given.get("error"),
        since=given.get("since"), until=given.get("until"), status=status,
    )  # fmt: skip


def _require_selection(where: ops.DeadLetterFilter, all_: bool, verb: str) -> None:
    if where.is_empty() and not all_:
        raise click.UsageError(f"name dead letter ids or a filter to {verb}, or pass --all")


@click.group()
def dlq() -> None:
    """Dead letters recorded by the worker: inspect, replay, discard, export."""


@dlq.command("list")
@filters
@click.option("--status", type=click.Choice(ops.STATUSES), default="dead", show_default=True)
@click.option("--limit", type=int, default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="JSON lines instead of a table.")
def dlq_list(status: str, limit: int, as_json: bool, **given: Any) -> None:
    """The most recent dead letters matching the filters."""
    where = _filter(status=status, **given)
    runtime = get_runtime()
    for d in ops.listing(runtime.database, where, limit):
        if as_json:
            click.echo(json.dumps(ops.as_dict(d, with_traceback=False), default=str))
            continue
        click.echo(
            f"{d.id:>6} {d.dead_at:%Y-%m-%d %H:%M:%S} {d.status:<9} {d.queue_name:<14} "
            f"{d.actor_name or '-':<32} {d.reason:<18} {d.attempts} "
            f"{d.exception_type or ''}: {(d.exception_message or '')[:80]}"
        )
    if not as_json:
        click.echo(f"({ops.count(runtime.database, where)} matching)", err=True)


@dlq.command("show")
@click.argument("dead_letter_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="One JSON object, traceback included.")
def dlq_show(dead_letter_id: int, as_json: bool) -> None:
    """One dead letter: arguments, options, attempts, times, exception and its full traceback."""
    found = ops.listing(get_runtime().database, _filter(ids=(dead_letter_id,), status="all"), 1)
    if not found:
        raise click.ClickException(f"no dead letter with id {dead_letter_id}")
    data = ops.as_dict(found[0])
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
        return
    trace = data.pop("traceback")
    click.echo(json.dumps(data, indent=2, default=str))
    click.echo(trace or "(no traceback)")


@dlq.command("replay")
@click.argument("ids", type=int, nargs=-1)
@filters
@click.option("--all", "all_", is_flag=True, help="Replay every dead letter (no filter).")
@click.option("--dry-run", is_flag=True, help="Print what would be replayed; send nothing.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def dlq_replay(ids: tuple[int, ...], all_: bool, dry_run: bool, yes: bool, **given: Any) -> None:
    """Send matching dead letters again, each with a fresh retry budget and its trace id.

    Crash-safe: a replay killed halfway can be run again; nothing is lost and no replayed message
    runs twice.
    """
    import worker_app

    runtime = get_runtime()
    where = _filter(ids=ids, **given)
    _require_selection(where, all_, "replay")
    total = ops.count(runtime.database, where)
    if dry_run:
        for row in ops.iterate(runtime.database, where):
            why = ops.why_not_replayable(row)
            if why is None and row.actor_name not in worker_app.broker.actors:
                click.echo(
                    f"{row.id:>6} note: actor {row.actor_name!r} is not defined in this process", err=True
                )
            click.echo(
                f"{row.id:>6} {row.queue_name:<14} {row.actor_name or '-':<32} "
                + (f"SKIP: {why}" if why else "would replay")
            )
        click.echo(f"dry run: {total} dead letter(s) match; nothing sent")
        return
    if total == 0:
        click.echo("no dead letter matches")
        return
    if not yes:
        click.confirm(f"replay {total} dead letter(s)?", abort=True, err=True)
    with click.progressbar(length=total, label="replaying", file=sys.stderr) as bar:
        done = [0]

        def progress(report: ops.ReplayReport) -> None:
            bar.update(report.matched - done[0])
            done[0] = report.matched

        report = ops.replay(runtime.database, worker_app.broker, where, progress=progress)
    if len(report.messages) <= 20:  # a few are worth naming; thousands are not
        for dead_letter_id, message_id in report.messages.items():
            click.echo(f"replayed {dead_letter_id} as message {message_id}")
    for dead_letter_id, why in report.skipped.items():
        click.echo(f"skipped {dead_letter_id}: {why}", err=True)
    click.echo(f"replayed {report.replayed} of {report.matched} dead letter(s)")
    if report.skipped:
        sys.exit(1)


@dlq.command("discard")
@click.argument("ids", type=int, nargs=-1)
@filters
@click.option("--all", "all_", is_flag=True, help="Discard every dead letter (no filter).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def dlq_discard(ids: tuple[int, ...], all_: bool, yes: bool, **given: Any) -> None:
    """Mark matching dead letters discarded: kept for the record, never replayed."""
    runtime = get_runtime()
    where = _filter(ids=ids, **given)
    _require_selection(where, all_, "discard")
    total = ops.count(runtime.database, where)
    if total == 0:
        click.echo("no dead letter matches")
        return
    if not yes:
        click.confirm(f"discard {total} dead letter(s)?", abort=True, err=True)
    click.echo(f"discarded {ops.discard(runtime.database, where)} dead letter(s)")


@dlq.command("export")
@filters
@click.option("--status", type=click.Choice(ops.STATUSES), default="all", show_default=True)
@click.option("--output", "-o", type=click.File("w"), default="-", help="File to write (default: stdout).")
def dlq_export(status: str, output: Any, **given: Any) -> None:
    """Matching dead letters as JSON lines (every field, traceback included)."""
    written = 0
    for line in ops.export_lines(get_runtime().database, _filter(status=status, **given)):
        output.write(line + "\n")
        written += 1
    click.echo(f"exported {written} dead letter(s)", err=True)


@dlq.command("drain")
def dlq_drain() -> None:
    """Move dead letters spooled in Redis (PostgreSQL was down) into PostgreSQL."""
    click.echo(f"moved {get_runtime().dead_letters.drain(limit=1_000_000)} spooled dead letter(s)")


@dlq.command("adopt")
@click.option(
    "--queue", "queues", multiple=True, help="Only this queue's .XQ (repeatable; default: every domain)."
)
def dlq_adopt(queues: tuple[str, ...]) -> None:
    """Record messages found in .XQ queues without a dead-letter record (e.g. from before the recorder
    existed); the .XQ copies stay where they are."""
    from worker_app.policies import DOMAINS

    runtime = get_runtime()
    report = ops.adopt_xq(runtime.dead_letters, runtime.settings.rabbitmq_urls, list(queues or DOMAINS))
    for xq, seen in report.seen.items():
        click.echo(f"{xq:<18} {seen:>6} message(s), {report.adopted.get(xq, 0):>6} adopted")
    click.echo(f"adopted {sum(report.adopted.values())} dead letter(s)")
