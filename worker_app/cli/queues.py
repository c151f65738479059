"""``worker-app queues``: per-queue depths and consumers; ``queues pause|resume|drain QUEUE``;
``queues purge QUEUE``; ``queues migrate``."""

from __future__ import annotations

import json
import time

import click
import pika
from dramatiq.common import dq_name, xq_name
from sqlalchemy.exc import SQLAlchemyError

from worker_app import amqp, ordered, pauses
from worker_app import queue_migration as qm
from worker_app.cli.errors import BadInput
from worker_app.policies import DOMAINS
from worker_app.queues import QueueReport, queue_report, with_dead_letters, work_left
from worker_app.runtime import get_runtime


def _num(value: float | None, fmt: str = "d") -> str:
    return "?" if value is None else format(value, fmt)


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def queues(ctx: click.Context, as_json: bool) -> None:
    """Every domain queue (and an ordered domain's shards): ready, unacked, delayed (.DQ), open dead
    letters (PostgreSQL), messages in .XQ, consumers, rates; then the paused queues."""
    if ctx.invoked_subcommand is not None:
        return
    report = _report()
    paused = _paused()
    if as_json:
        listed = None if paused is None else [p.as_dict() for p in paused.values()]
        click.echo(json.dumps({**report.as_dict(), "paused": listed}, indent=2))
        return
    click.echo(f"{'QUEUE':<14} {'READY':>7} {'UNACKED':>8} {'DELAYED':>8} {'DEAD':>6} {'XQ':>6} "
               f"{'CONSUMERS':>9} {'IN/s':>7} {'OUT/s':>7}")  # fmt: skip
    for q in report.queues:
        click.echo(
            f"{q.queue:<14} {q.ready:>7} {_num(q.unacked):>8} {q.delayed:>8} {_num(q.dead_letters):>6} "
            f"{q.dead:>6} {q.consumers:>9} {_num(q.publish_rate, '.1f'):>7} {_num(q.deliver_rate, '.1f'):>7}"
        )
    for q in report.queues:
        if q.queue_type == "quorum":
            online = f"{len(q.online or [])}/{len(q.members or [])} members online"
            click.echo(f"{q.queue:<14} quorum, leader {q.leader}, {online}: {', '.join(q.members or [])}")
    for p in (paused or {}).values():
        why = f": {p.reason}" if p.reason else ""
        click.echo(f"{p.queue:<14} PAUSED since {p.paused_at:%Y-%m-%d %H:%M:%S %Z} by {p.paused_by}{why}")
    click.echo(f"source: {report.source}" + (f" ({report.note})" if report.note else ""), err=True)


def _paused() -> dict[str, pauses.Pause] | None:
    """The paused queues; ``None`` (with a warning) while PostgreSQL is down."""
    try:
        return pauses.paused_queues(get_runtime().database)
    except SQLAlchemyError as e:
        click.echo(f"warning: paused queues unknown (PostgreSQL: {type(e).__name__})", err=True)
        return None


def _report() -> QueueReport:
    """Depths from RabbitMQ, with open dead letters from PostgreSQL; this command is for bad days,
    so PostgreSQL down leaves the dead-letter counts unknown (``?``, ``null``) with a warning."""
    runtime = get_runtime()
    report = queue_report(runtime.settings)  # RabbitMQ unreachable: one line, exit 3 (cli/errors.py)
    try:
        return with_dead_letters(report, runtime.database)
    except SQLAlchemyError as e:
        click.echo(f"warning: open dead letters unknown (PostgreSQL: {type(e).__name__})", err=True)
        return report


def _our_queues() -> set[str]:
    return {
        name for queue in ordered.with_shards(DOMAINS) for name in (queue, dq_name(queue), xq_name(queue))
    }


def _domain(queue: str) -> str:
    try:
        return pauses.domain_queue(queue)
    except pauses.NotADomainQueue as e:
        raise BadInput(str(e)) from None


@queues.command("pause")
@click.argument("queue")
@click.option("--reason", help="Why (shown by `worker-app queues` and the dashboard).")
@click.option("--by", default="cli", show_default=True, help="Who paused it.")
def pause(queue: str, reason: str | None, by: str) -> None:
    """Stop every worker taking new messages from QUEUE (and its delay queue, an ordered domain's
    shards) within a few seconds; running messages finish. Survives worker restarts. Producers still
    publish: the queue grows until `queues resume`."""
    paused = pauses.pause(get_runtime().database, _domain(queue), by=by, reason=reason)
    click.echo(f"{queue} paused" if paused else f"{queue} was paused already")


@queues.command("resume")
@click.argument("queue")
@click.option("--by", default="cli", show_default=True, help="Who resumed it.")
def resume(queue: str, by: str) -> None:
    """Let the workers take messages from QUEUE again."""
    resumed = pauses.resume(get_runtime().database, _domain(queue), by=by)
    click.echo(f"{queue} resumed" if resumed else f"{queue} was not paused")


@queues.command("drain")
@click.argument("queue")
@click.option("--wait", is_flag=True, help="Wait until QUEUE and its delay queue are empty.")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=1), default=3600.0, show_default=True,
              help="With --wait: give up after this many seconds (exit 1).")  # fmt: skip
@click.option("--poll", "poll_s", type=click.FloatRange(min=0.1), default=1.0, show_default=True,
              help="Seconds between looks.")  # fmt: skip
def drain(queue: str, wait: bool, timeout_s: float, poll_s: float) -> None:
    """How many messages QUEUE still holds (ready + unacked + delayed, over its shards for an ordered
    domain); with --wait, wait until none is left. Exit 1 when some are left."""
    names = ordered.with_shards([_domain(queue)])
    settings = get_runtime().settings
    deadline = time.monotonic() + timeout_s
    while True:
        left, note = work_left(settings, names)
        if note:
            click.echo(f"warning: {note}", err=True)
        if left == 0:
            click.echo(f"{queue} is drained: no message ready, unacked or delayed")
            return
        if not wait or time.monotonic() >= deadline:
            raise click.ClickException(f"{queue} holds {left} message(s) (ready + unacked + delayed)")
        time.sleep(poll_s)


@queues.command("purge")
@click.argument("queue")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def purge(queue: str, yes: bool) -> None:
    """Delete every ready message of QUEUE (a domain queue, or its .DQ / .XQ). Messages being processed
    (unacked) are not touched. Dead-letter records in PostgreSQL are kept."""
    if queue not in _our_queues():
        raise click.BadParameter(f"{queue!r} is not a queue of this app (domain queues and their .DQ/.XQ)")
    connection = amqp.connect(get_runtime().settings.rabbitmq_urls)
    try:
        channel = connection.channel()
        ready = int(channel.queue_declare(queue, passive=True).method.message_count)
        if ready == 0:
            click.echo(f"{queue} is empty")
            return
        if not yes:
            click.confirm(f"delete {ready} ready message(s) from {queue}?", abort=True, err=True)
        purged = int(channel.queue_purge(queue).method.message_count)
    except pika.exceptions.ChannelClosedByBroker as e:
        raise click.ClickException(f"{queue}: {e.reply_text}") from None
    finally:
        connection.close()
    click.echo(f"purged {purged} message(s) from {queue}")


@queues.command("migrate")
@click.option("--to", "to_type", type=click.Choice(["quorum"]), required=True, help="The new queue type.")
@click.option(
    "--target-vhost", required=True, help="The vhost to move to (created if missing); not the source."
)
@click.option("--dry-run", is_flag=True, help="Print the plan only: nothing is declared, moved or deleted.")
@click.option("--delete-old", is_flag=True, help="Then delete the source queues that are empty and unused.")
@click.option(
    "--force", is_flag=True, help="Move even while source queues have consumers or unacked messages."
)
@click.option("--json", "as_json", is_flag=True, help="Print the plan and the result as JSON.")
def migrate(
    *, to_type: str, target_vhost: str, dry_run: bool, delete_old: bool, force: bool, as_json: bool
) -> None:
    """Move this app's queues (domain queues, .DQ, .XQ, hold queues) from classic to quorum: declared
    under the same names in the --target-vhost (same nodes and user as RABBITMQ_URL), then every message moved
    there with publisher confirms. Refuses while a source queue has consumers or unacked messages (stop
    the workers first) unless --force. Run it again to sweep what arrived since. Exit 1 when the counts
    do not add up or a message was refused. See docs/quorum.md."""
    import worker_app

    settings, broker = get_runtime().settings, worker_app.broker
    deployment = qm.Deployment(settings.rabbitmq_urls, settings.rabbitmq_management_url,
                               broker.dead_message_ttl_ms, broker.max_hold_ms)  # fmt: skip
    try:
        plan = qm.plan_migration(deployment, target_vhost, sorted(_our_queues()))
    except qm.InvalidTarget as e:
        raise BadInput(str(e)) from None
    if not as_json:
        _print_plan(plan)
    result = None if dry_run else _run_migration(deployment, plan, force=force, delete_old=delete_old)
    if as_json:
        click.echo(json.dumps({"plan": plan.as_dict(), "result": result and result.as_dict()}, indent=2))
    elif result is not None and result.queues:
        _print_result(result, plan)
    if result is not None and not result.ok:
        raise click.ClickException("; ".join([*result.imbalances(), *(f"kept {k}" for k in result.kept)]))


def _run_migration(deployment: qm.Deployment, plan: qm.MigrationPlan, *, force: bool,
                   delete_old: bool) -> qm.MigrationResult:  # fmt: skip
    try:
        return qm.migrate(deployment, plan, force=force, delete_old=delete_old)
    except qm.MigrationError as e:
        raise click.ClickException(str(e)) from None


def _print_plan(plan: qm.MigrationPlan) -> None:
    state = "exists" if plan.target_exists else "will be created"
    click.echo(f"source vhost {plan.source_vhost!r} -> target vhost {plan.target_vhost!r} ({state})")
    click.echo(f"{'QUEUE':<24} {'TYPE':<8} {'READY':>7} {'UNACKED':>8} {'CONSUMERS':>9}  PLAN")
    for q in plan.queues:
        action = {qm.MOVE: "move", qm.QUORUM: "already quorum: nothing to do"}.get(
            q.action, "missing: nothing to do"
        )
        counts = f"{q.ready:>7} {_num(q.unacked):>8} {q.consumers:>9}"
        click.echo(
            f"{q.name:<24} {q.source_type or '-':<8} {counts}  {action}{'  (IN USE)' if q.busy else ''}"
        )
    for q in plan.to_move:
        exchange = f"; behind fanout exchange {q.name}" if q.kind == "hold" else ""
        click.echo(f"declare {q.name} (durable, {q.target}{exchange}): {json.dumps(q.arguments)}")
    moving = sum(q.ready for q in plan.to_move)
    click.echo(
        f"{moving} message(s) in {len(plan.to_move)} queue(s) to move" if plan.to_move else "nothing to move"
    )


def _print_result(result: qm.MigrationResult, plan: qm.MigrationPlan) -> None:
    click.echo(f"{'QUEUE':<24} {'PLANNED':>8} {'MOVED':>8} {'SOURCE NOW':>10} {'TARGET NOW':>10}")
    for q in result.queues:
        click.echo(f"{q.name:<24} {q.planned:>8} {q.moved:>8} {q.source_now:>10} {q.target_now:>10}")
    click.echo(f"moved {result.moved} message(s) from {plan.source_vhost!r} to {plan.target_vhost!r}"
               + (" (vhost created)" if result.created_vhost else ""))  # fmt: skip
    if result.deleted:
        click.echo(f"deleted {len(result.deleted)} old queue(s): {', '.join(result.deleted)}")
