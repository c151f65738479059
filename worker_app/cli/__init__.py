"""``worker-app``: the operator's command line (database, worker, heartbeats, dead letters, sandbox)."""

from __future__ import annotations

import logging
import sys

import click

from worker_app import broker, migrate
from worker_app.cli.alerts import alerts
from worker_app.cli.dlq import dlq
from worker_app.cli.errors import BadInput, CliGroup
from worker_app.cli.jobs import jobs
from worker_app.cli.queues import queues
from worker_app.cli.run import run
from worker_app.cli.schedules import schedules
from worker_app.heartbeat import ping as ping_queues
from worker_app.policies import DOMAINS
from worker_app.runtime import get_runtime


@click.group(cls=CliGroup)
@click.option("--debug", is_flag=True, help="Show the traceback of an unexpected error instead of one line.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """CyberVPN Task Worker operations.

    Exit codes: 0 done, 1 the operation failed or was declined, 2 bad input or configuration,
    3 a dependency (PostgreSQL, Redis, RabbitMQ) is unreachable.
    """
    ctx.meta["debug"] = debug
    if not debug:
        # pika logs every failed connection attempt as several ERROR lines with a traceback; the
        # command reports the outage itself, in one line.
        logging.getLogger("pika").setLevel(logging.CRITICAL)


main.add_command(alerts)
main.add_command(dlq)
main.add_command(jobs)
main.add_command(queues)
main.add_command(schedules)
main.add_command(run)


@main.group()
def db() -> None:
    """Database schema: migrations and drift check."""


def _db_url() -> str:
    return get_runtime().settings.database_url.get_secret_value()


@db.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Apply migrations up to REVISION (default: head)."""
    migrate.upgrade(_db_url(), revision)
    click.echo(f"database upgraded to {revision}")


@db.command("check")
def db_check() -> None:
    """Compare the models with the live database; exit 1 on any drift."""
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
    """Run ``dramatiq worker_app`` with the configured processes and threads, inside this process so
    that Dramatiq's own main-process lines are formatted as ours (JSON with ``LOG_FORMAT=json``)."""
    from worker_app.bootstrap import run_dramatiq

    settings = get_runtime().settings
    args = ["worker_app", "-p", str(processes or settings.worker_concurrency)]
    args += ["-t", str(threads or settings.worker_threads)]
    if queues:
        args += ["-Q", *queues]
    sys.exit(run_dramatiq(args))


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


@main.command()
@click.option("--port", type=int, default=None, help="The process's port (default METRICS_PORT: a worker; "
              "the scheduler's is SCHEDULER_METRICS_PORT, serve's API_PORT).")  # fmt: skip
@click.option("--ready", is_flag=True, help="Ask /readyz (ready for work) instead of /healthz (alive).")
@click.option("--timeout", "timeout_s", type=float, default=3.0, show_default=True)
def health(port: int | None, ready: bool, timeout_s: float) -> None:
    """The pod-local probe of a process on this host (Docker's HEALTHCHECK): exit 0 if it answers 200,
    1 otherwise (its checks are printed). No broker round trip: the process answers from its own state,
    and the command itself imports nothing of the app (worker_app_entry.py)."""
    from worker_app_entry import health as probe

    argv = [
        *(["--port", str(port)] if port else []),
        *(["--ready"] if ready else []),
        "--timeout",
        str(timeout_s),
    ]
    raise SystemExit(probe(argv))


@main.command()
def seed() -> None:
    """Insert demo data for a local run: plans and nodes once, five demo notifications unless some wait."""
    from worker_app.seed import seed_demo

    added = seed_demo(get_runtime().database)
    click.echo(", ".join(f"{table}: +{n}" for table, n in added.items()))


@main.command()
@click.option("--host", default=None, help="Default SANDBOX_HOST.")
@click.option("--telegram-port", type=int, default=None, help="Default SANDBOX_TELEGRAM_PORT.")
@click.option("--remnawave-port", type=int, default=None, help="Default SANDBOX_REMNAWAVE_PORT.")
@click.option("--cryptobot-port", type=int, default=None, help="Default SANDBOX_CRYPTOBOT_PORT.")
@click.option("--demo", is_flag=True, help="Seed demo users and nodes into the Remnawave panel.")
def sandbox(
    host: str | None,
    telegram_port: int | None,
    remnawave_port: int | None,
    cryptobot_port: int | None,
    demo: bool,
) -> None:
    """Run the sandbox: fake Telegram Bot API, Remnawave panel and Crypto Pay servers on loopback
    (docs/sandbox.md)."""
    from sandbox.server import serve

    settings = get_runtime().settings
    serve(
        host or settings.sandbox_host,
        telegram_port or settings.sandbox_telegram_port,
        remnawave_port or settings.sandbox_remnawave_port,
        demo=demo,
        cryptobot_port=cryptobot_port or settings.sandbox_cryptobot_port,
    )


@main.command()
@click.option("--host", default=None, help="Default API_HOST (127.0.0.1).")
@click.option("--port", type=int, default=None, help="Default API_PORT (8000).")
def serve(host: str | None, port: int | None) -> None:
    """Run the HTTP API (and, later, the dashboard). Without API_TOKEN it binds only to loopback."""
    from werkzeug.serving import make_server

    import worker_app
    from worker_app.errors import ConfigurationError
    from worker_app.publishing import PublisherThreads
    from worker_app.web.api import check_serving, create_app

    runtime = get_runtime()
    settings = runtime.settings
    host = host or settings.api_host
    port = port or settings.api_port
    try:
        check_serving(host, settings.api_token is not None)
    except ConfigurationError as e:
        raise BadInput(str(e)) from None
    from worker_app.middleware.metrics import prepare_own_metrics_dir

    prepare_own_metrics_dir(settings.metrics_dir, "serve")  # GET /metrics: this process's counters
    # werkzeug runs each HTTP connection on a new thread: publish from a few long-lived ones instead
    publisher = PublisherThreads(worker_app.broker, threads=settings.api_publisher_threads,
                                 timeout_s=settings.api_publish_timeout_s)  # fmt: skip
    worker_app.broker.publish_through(publisher)
    app = create_app(runtime, worker_app.broker)
    app.extensions["health"].start()  # /readyz answers from these background checks
    server = make_server(host, port, app, threaded=True)
    logging.getLogger(__name__).info(
        "API on http://%s:%d/api/v1 (OpenAPI: /api/v1/openapi.json), dashboard on http://%s:%d/",
        host, port, host, port,
    )  # fmt: skip
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        server.shutdown()
    finally:
        worker_app.broker.publish_through(None)
        publisher.close()
