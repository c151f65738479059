"""Builds the process: settings → redaction → logging → Sentry → runtime → broker.

Called once by ``import worker_app``. Performs no network I/O: connections open on first use.
"""

from __future__ import annotations

import logging
import multiprocessing
import sys

import dramatiq
import redis
from dramatiq.middleware import (
    AgeLimit,
    Callbacks,
    CurrentMessage,
    Middleware,
    Pipelines,
    ShutdownNotifications,
    TimeLimit,
)
from dramatiq.results import Results
from dramatiq.results.backends import RedisBackend

from worker_app.broker import CyberRabbitmqBroker
from worker_app.config import Settings, load_settings
from worker_app.errors import ConfigurationError
from worker_app.logging_setup import configure_logging
from worker_app.middleware.alerting import Alerting
from worker_app.middleware.db_sessions import DbSessions
from worker_app.middleware.dead_letters import DeadLetters
from worker_app.middleware.event_log import EventLog
from worker_app.middleware.guards import ArgumentCheck, RedeliveryLimit
from worker_app.middleware.jobs import JobTracking
from worker_app.middleware.lifecycle import StopFlag
from worker_app.middleware.metrics import Metrics
from worker_app.middleware.pod_health import PodHealth
from worker_app.middleware.queue_control import QueueControl
from worker_app.middleware.replays import ReplayClaims
from worker_app.middleware.retries import PolicyRetries
from worker_app.middleware.scheduled import ScheduledFires
from worker_app.middleware.telemetry import Telemetry
from worker_app.middleware.trace import TraceContext
from worker_app.redaction import Redactor, install
from worker_app.runtime import Runtime, set_runtime
from worker_app.workers import WorkerHeartbeats

log = logging.getLogger(__name__)
DAY_MS = 86_400_000


def build_middleware(runtime: Runtime, *, with_metrics: bool = True) -> list[Middleware]:
    """The ordered middleware list (ARCHITECTURE.md §2). After-hooks run in reverse order, so
    the retry decision is made before dead-letter recording, logging and metrics see it."""
    settings = runtime.settings
    alerting = Alerting(runtime)
    middleware: list[Middleware] = [TraceContext(), EventLog(), Telemetry(runtime.redis)]
    if with_metrics:
        middleware += [Metrics(settings.metrics_dir, settings.metrics_port),
                       PodHealth(runtime.database, settings.metrics_dir)]  # fmt: skip
    middleware += [
        AgeLimit(),
        TimeLimit(time_limit=settings.time_limit_ms),
        ShutdownNotifications(),
        Callbacks(),
        Pipelines(),
        PolicyRetries(),
        DeadLetters(runtime.dead_letters, on_dead=alerting.on_dead),
        alerting,
        CurrentMessage(),
        Results(  # type: ignore[no-untyped-call]
            backend=RedisBackend(  # socket timeouts: a hung Redis must not hold worker threads forever
                client=redis.Redis.from_url(
                    settings.redis_url.get_secret_value(), socket_timeout=5, socket_connect_timeout=5
                ),
                namespace="cybervpn:results",
            ),
            result_ttl=settings.result_ttl_seconds * 1000,
        ),
        DbSessions(runtime.database),
        ScheduledFires(runtime.database),
        ReplayClaims(runtime.database),
        WorkerHeartbeats(
            runtime.redis, memory_limit_mb=settings.worker_memory_limit_mb
        ),  # before JobTracking, whose skip its after_skip_message undoes
        JobTracking(runtime.database),
        StopFlag(runtime.stopping),
        RedeliveryLimit(runtime.redis, settings.max_redeliveries),
        ArgumentCheck(),
        QueueControl(runtime.database, settings.queue_pause_poll_s, _restricted(settings)),
    ]
    return middleware


def _restricted(settings: Settings) -> list[str] | None:
    """The queues a worker started without ``-Q`` consumes, when WORKER_QUEUES or ENABLE_<DOMAIN>
    narrows them; ``None``: every declared queue (the tests' own, too)."""
    from worker_app.policies import DOMAINS

    enabled = settings.enabled_queues()
    return None if not settings.worker_queues and set(enabled) == set(DOMAINS) else enabled


def build_broker(runtime: Runtime) -> CyberRabbitmqBroker:
    """The RabbitMQ broker with the full middleware stack; connects lazily."""
    settings = runtime.settings
    middleware = build_middleware(runtime)
    dead_letters = next(m for m in middleware if isinstance(m, DeadLetters))
    return CyberRabbitmqBroker(
        url=";".join(settings.rabbitmq_urls),  # Dramatiq's list form: pika tries the nodes in order
        middleware=middleware,
        max_hold_ms=settings.delay_max_hold_ms,
        dead_message_ttl_ms=settings.dead_letter_retention_days * DAY_MS,
        undecodable_sink=dead_letters,
        queue_type=settings.rabbitmq_queue_type,
    )


def init_sentry(settings: Settings, redactor: Redactor) -> None:
    """Sentry with its Dramatiq integration, before the broker exists; events are redacted."""
    if settings.sentry_dsn is None:
        return
    import sentry_sdk
    from sentry_sdk.integrations.dramatiq import DramatiqIntegration

    def scrub(event: dict[str, object], hint: object) -> dict[str, object]:
        import json

        return dict(json.loads(redactor(json.dumps(event, default=str))))

    sentry_sdk.init(
        dsn=settings.sentry_dsn.get_secret_value(),
        environment=settings.sentry_environment,
        integrations=[DramatiqIntegration()],
        before_send=scrub,  # type: ignore[arg-type]
        send_default_pii=False,
    )


def _first_process() -> bool:
    """False in the 2nd, 3rd… worker process of ``dramatiq -p N``, so a bad setting prints once."""
    name = multiprocessing.current_process().name
    return not name.startswith("Process-") or name == "Process-1"


def run_dramatiq(argv: list[str]) -> int:
    """Run the ``dramatiq`` command line (``argv`` without the program name) in this process;
    its exit code. What ``worker-app worker`` runs.

    ``dramatiq worker_app`` writes its main process's own lines (booting, signals forwarded, a
    worker process that died, shutdown) in Dramatiq's text format whatever LOG_FORMAT says: that
    process never imports ``worker_app``, and Dramatiq has no hook to change it. Run from here,
    the main process has our handlers on the root logger already, so Dramatiq's
    ``logging.basicConfig`` does nothing and those lines are ours too. Its worker processes are
    spawned rather than forked: this process already runs threads (the log writer), and a fork
    copies their locks in whatever state they are.
    """
    from dramatiq.cli import main, make_argument_parser

    args = make_argument_parser().parse_args([*argv, "--use-spawn"])  # type: ignore[no-untyped-call]
    return int(main(args))  # type: ignore[no-untyped-call]


def bootstrap() -> CyberRabbitmqBroker:
    """Read settings and build everything; a bad setting exits with one line naming it."""
    try:
        settings = load_settings()
    except ConfigurationError as e:
        if _first_process():
            print(f"worker-app: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    redactor = Redactor(settings.secret_values())
    install(redactor)
    configure_logging(settings.log_level, settings.log_format)
    init_sentry(settings, redactor)
    runtime = Runtime(settings)
    set_runtime(runtime)
    broker = build_broker(runtime)
    dramatiq.set_broker(broker)
    return broker
