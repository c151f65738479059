"""``worker-app``: the operator's command line (database, worker, heartbeats, dead letters, sandbox)."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click
from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from models import DeadLetter
from worker_app import broker, migrate
from worker_app.cli_notifications import notifications
from worker_app.heartbeat import ping as ping_queues
from worker_app.policies import DOMAINS
from worker_app.redaction import redact
from worker_app.runtime import get_runtime


@click.group()
def main() -> None:
    """CyberVPN Task Worker operations."""


main.add_command(notifications)


@main.group()
def db() -> None:
    """Database schema: migrations and drift check."""


def _db_url() -> str:
    return get_runtime().settings.database_url.get_secret_value()


@contextmanager
def _database_errors() -> Iterator[None]:
    """Turn a connection failure into one clear line (no traceback)."""
    try:
        yield
    except OperationalError as e:
        url = make_url(_db_url())
        reason = redact(str(e.orig).strip().splitlines()[0]) if e.orig else type(e).__name__
        raise click.ClickException(
            f"cannot reach the database {url.host}:{url.port or 5432}/{url.database}: {reason}"
        ) from None


@db.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Apply migrations up to REVISION (default: head)."""
    with _database_errors():
        migrate.upgrade(_db_url(), revision)
    click.echo(f"database upgraded to {revision}")


@db.command("check")
def db_check() -> None:
    """Compare the models with the live database; exit 1 on any drift."""
    with _database_errors():
        drifts = migrate.check(_db_url())
    for drift in drifts:
        click.echo(("DRIFT  " if drift.fatal else "note   ") + drift.text)
    fatal = sum(d.fatal for d in drifts)
    if fatal:
        click.echo(f"{fatal} drift(s) between the models and the database", err=True)
        sys.exit(1)
    click.echo("database matches the models")


@main.command()
@click.option(
    "--processes", "-p", type=int, default=None, help="Worker processes (default WORKER_CONCURRENCY)."
)
@click.option("--threads", "-t", type=int, default=None, help="Threads per process (default WORKER_THREADS).")
@click.option("--queues", "-Q", multiple=True, help="Only these queues (repeatable).")
def worker(processes: int | None, threads: int | None, queues: tuple[str, ...]) -> None:
    """Run ``dramatiq worker_app`` with the configured processes and threads."""
    settings = get_runtime().settings
    exe = shutil.which("dramatiq") or os.path.join(os.path.dirname(sys.executable), "dramatiq")
    args = [
        exe,
        "worker_app",
        "-p",
        str(processes or settings.worker_concurrency),
        "-t",
        str(threads or settings.worker_threads),
    ]
    if queues:
        args += ["-Q", *queues]
    os.execv(exe, args)


@main.command()
@click.option("--queue", "-Q", "queues", multiple=True, help="Queues to ping (default: every domain).")
@click.option("--timeout", "timeout_s", type=float, default=30.0, show_default=True)
def ping(queues: tuple[str, ...], timeout_s: float) -> None:
    """Send a heartbeat through each queue and wait for a worker to answer; exit 1 if any is silent."""
    answers = ping_queues(broker, get_runtime().redis, list(queues or DOMAINS), timeout_s)
    for queue, beat in answers.items():
        status = f"ok  {beat['latency_ms']:>6} ms  pid {beat['pid']}" if beat else "NO ANSWER"
        click.echo(f"{queue:<14} {status}")
    if any(beat is None for beat in answers.values()):
        sys.exit(1)


@main.group()
def dlq() -> None:
    """Dead letters recorded by the worker."""


@dlq.command("list")
@click.option("--queue", default=None)
@click.option("--limit", type=int, default=20, show_default=True)
def dlq_list(queue: str | None, limit: int) -> None:
    """The most recent dead letters."""
    with get_runtime().database.new_session() as s:
        query = select(DeadLetter).order_by(DeadLetter.dead_at.desc()).limit(limit)
        if queue:
            query = query.where(DeadLetter.queue_name == queue)
        for d in s.scalars(query):
            click.echo(
                f"{d.id:>6} {d.dead_at:%Y-%m-%d %H:%M:%S} {d.queue_name:<14} {d.actor_name or '-':<32} "
                f"{d.reason:<18} {d.attempts} {d.exception_type or ''}: {(d.exception_message or '')[:80]}"
            )


@dlq.command("show")
@click.argument("dead_letter_id", type=int)
def dlq_show(dead_letter_id: int) -> None:
    """One dead letter with its arguments and full traceback."""
    with get_runtime().database.new_session() as s:
        d = s.get(DeadLetter, dead_letter_id)
        if d is None:
            raise click.ClickException(f"no dead letter with id {dead_letter_id}")
        fields = {c.name: getattr(d, c.name) for c in DeadLetter.__table__.columns if c.name != "traceback"}
        fields["raw_body"] = d.raw_body.decode(errors="replace") if d.raw_body else None
        click.echo(json.dumps(fields, indent=2, default=str))
        click.echo(d.traceback or "(no traceback)")


@dlq.command("drain")
def dlq_drain() -> None:
    """Move dead letters spooled in Redis (PostgreSQL was down) into PostgreSQL."""
    click.echo(f"moved {get_runtime().dead_letters.drain(limit=1_000_000)} spooled dead letter(s)")


@main.command()
def seed() -> None:
    """Insert demo data for a local run: plans and nodes once, five demo notifications unless some wait."""
    from worker_app.seed import seed_demo

    with _database_errors():
        added = seed_demo(get_runtime().database)
    click.echo(", ".join(f"{table}: +{n}" for table, n in added.items()))


@main.command()
@click.option("--host", default=None, help="Default SANDBOX_HOST.")
@click.option("--telegram-port", type=int, default=None, help="Default SANDBOX_TELEGRAM_PORT.")
def sandbox(host: str | None, telegram_port: int | None) -> None:
    """Run the sandbox: fake Telegram (and later Remnawave, Crypto Pay) servers on loopback."""
    from sandbox.server import serve

    settings = get_runtime().settings
    serve(host or settings.sandbox_host, telegram_port or settings.sandbox_telegram_port)
