"""``worker-app queues``: per-queue depths and consumers; ``queues purge QUEUE``."""

from __future__ import annotations

import json

import click
import pika
from dramatiq.common import dq_name, xq_name
from sqlalchemy.exc import SQLAlchemyError

from worker_app import amqp
from worker_app.policies import DOMAINS
from worker_app.queues import QueueReport, queue_report, with_dead_letters
from worker_app.runtime import get_runtime


def _num(value: float | None, fmt: str = "d") -> str:
    return "?" if value is None else format(value, fmt)


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def queues(ctx: click.Context, as_json: bool) -> None:
    """Every domain queue: ready, unacked, delayed (.DQ), open dead letters (PostgreSQL), messages in
    .XQ, consumers, rates."""
    if ctx.invoked_subcommand is not None:
        return
    report = _report()
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
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
    click.echo(f"source: {report.source}" + (f" ({report.note})" if report.note else ""), err=True)


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
    return {name for domain in DOMAINS for name in (domain, dq_name(domain), xq_name(domain))}


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
