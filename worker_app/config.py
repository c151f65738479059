"""Typed settings: the only code in the project that reads the environment.

Every variable has a default pointing at the local services and the sandbox, so a fresh clone runs
with no environment at all. Secrets can also come from ``<NAME>_FILE`` (Docker and Kubernetes
secrets). A bad value stops start-up with one line naming the variable (:func:`load_settings`).
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from worker_app.errors import ConfigurationError

#: Settings that are URLs whose password (if any) is secret.
SECRET_URL_NAMES = ("DATABASE_URL", "REDIS_URL", "RABBITMQ_URL")
#: Settings that are secret as a whole.
SECRET_TOKEN_NAMES = (
    "REMNAWAVE_API_TOKEN",
    "REMNAWAVE_API_KEY",
    "TELEGRAM_BOT_TOKEN",
    "CRYPTOBOT_TOKEN",
    "SENTRY_DSN",
    "API_TOKEN",
    "EXPORT_LINK_SECRET",
    "TELEGRAM_WEBHOOK_SECRET",
)
#: Settings whose value may instead be read from the file named by ``<NAME>_FILE``.
SECRET_NAMES = SECRET_URL_NAMES + SECRET_TOKEN_NAMES

#: The sandbox's development token; real deployments set TELEGRAM_BOT_TOKEN.
SANDBOX_TELEGRAM_TOKEN = "100000:sandbox-bot-token"


#: ``<JOB>_BATCH_LIMIT``: see :meth:`Settings.batch_limit`.
BATCH_LIMIT_SUFFIX = "_BATCH_LIMIT"


class Settings(BaseSettings):
    """Every knob of the worker, the scheduler, the CLI and the sandbox."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", frozen=True)

    database_url: SecretStr = SecretStr("postgresql+psycopg://postgres@127.0.0.1:5432/cybervpn")
    redis_url: SecretStr = SecretStr("redis://127.0.0.1:6379/0")
    rabbitmq_url: SecretStr = SecretStr("amqp://guest:guest@127.0.0.1:5672/%2F")
    rabbitmq_management_url: str = "http://127.0.0.1:15672"
    #: ``classic`` (one node) or ``quorum`` (a cluster: Raft-replicated queues, at-least-once
    #: dead-lettering). Queues cannot change type in place: ``worker-app queues migrate``.
    rabbitmq_queue_type: Literal["classic", "quorum"] = "classic"

    remnawave_url: str = "http://127.0.0.1:8082"
    remnawave_api_token: SecretStr = SecretStr("sandbox-remnawave-token")
    #: ``X-Forwarded-For`` / ``X-Forwarded-Proto: https`` on every panel call (the panel in production
    #: mode drops requests without them); unset: sent only for an ``http://`` REMNAWAVE_URL.
    remnawave_proxy_headers: bool | None = None
    #: ``X-Api-Key`` for a reverse proxy (Caddy) in front of the panel; unset: not sent.
    remnawave_api_key: SecretStr | None = None
    remnawave_timeout_s: float = Field(default=10.0, gt=0, le=120)
    #: Panel calls in flight per worker process (the panel has no rate limiter: be gentle).
    remnawave_max_concurrency: int = Field(default=8, ge=1, le=64)
    #: Users per ``/api/users/stream`` page in full scans (the panel allows up to 1,000).
    remnawave_page_size: int = Field(default=1000, ge=1, le=1000)
    telegram_api_url: str = "http://127.0.0.1:8081"
    telegram_bot_token: SecretStr = SecretStr(SANDBOX_TELEGRAM_TOKEN)
    cryptobot_api_url: str = "http://127.0.0.1:8083"
    cryptobot_token: SecretStr = SecretStr("sandbox-cryptobot-token")
    cryptobot_timeout_s: float = Field(default=10.0, gt=0, le=120)
    #: A Crypto Pay webhook whose request_date is further than this from now is refused (a replay).
    webhook_max_age_s: int = Field(default=300, ge=10, le=86_400)
    webhook_max_body_bytes: int = Field(default=65_536, ge=1024, le=4 * 1024 * 1024)
    #: Pending payments older than this are failed (verify_pending_payments checks the younger ones).
    payments_pending_max_age_h: int = Field(default=24, ge=1, le=24 * 30)
    #: Enqueues of one webhook's completion (the receiver's included) before retry_failed_webhooks alerts.
    payments_webhook_max_tries: int = Field(default=3, ge=1, le=100)
    #: retry_failed_webhooks leaves a webhook this young alone (its completion may still be running).
    payments_webhook_retry_after_min: int = Field(default=10, ge=1, le=24 * 60)
    #: aggregate_financial_stats recomputes this many days before today (late activations counted).
    payments_stats_days: int = Field(default=3, ge=1, le=31)
    #: How long a cybervpn:stats:payments:{date} key lives.
    payments_stats_ttl_days: int = Field(default=90, ge=1, le=3660)
    #: How long cybervpn:users:stats:summary lives (sync_user_stats rewrites it every 10 min).
    sync_user_stats_ttl_s: int = Field(default=900, ge=60, le=86_400)
    #: How long each cybervpn:nodes:config:{node_uuid} lives (sync_node_configs rewrites them every 30 min).
    sync_node_config_ttl_s: int = Field(default=2100, ge=60, le=86_400)
    admin_telegram_ids: Annotated[list[int], NoDecode] = Field(default_factory=list)
    #: Also receive ``critical`` alerts (on top of ADMIN_TELEGRAM_IDS).
    critical_telegram_ids: Annotated[list[int], NoDecode] = Field(default_factory=list)
    #: Where the dashboard is served (``worker-app serve``), for links in alerts; unset: alerts name
    #: the ``worker-app dlq replay`` command instead.
    dashboard_url: str | None = Field(default=None, pattern=r"^https?://\S+$")
    http_timeout_s: float = Field(default=10.0, gt=0, le=120)

    worker_concurrency: int = Field(default=2, ge=1, le=64)
    worker_threads: int = Field(default=8, ge=1, le=256)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    log_format: Literal["json", "text"] = "json"
    result_ttl_seconds: int = Field(default=3600, ge=1)

    notification_max_retries: int = Field(default=5, ge=0, le=50)
    notification_batch_size: int = Field(default=50, ge=1, le=1000)
    notification_drain_budget_s: float = Field(default=25.0, gt=0, le=3600)
    notification_poll_interval_s: float = Field(default=1.0, ge=0, le=60)
    notification_drainers: int = Field(default=2, ge=1, le=64)
    notification_send_concurrency: int = Field(default=8, ge=1, le=64)
    notification_max_wait_s: float = Field(default=5.0, ge=0, le=300)
    telegram_global_rate_per_s: float = Field(default=30.0, ge=0)
    telegram_per_chat_rate_per_s: float = Field(default=1.0, ge=0)
    telegram_fallback_rate_per_s: float = Field(default=5.0, gt=0, le=1000)
    telegram_send_timeout_s: float = Field(default=3.0, gt=0, le=60)
    telegram_breaker_failures: int = Field(default=5, ge=1, le=1000)
    telegram_breaker_window_s: float = Field(default=10.0, gt=0, le=3600)
    telegram_breaker_cooldown_s: float = Field(default=5.0, gt=0, le=3600)
    telegram_breaker_max_cooldown_s: float = Field(default=30.0, gt=0, le=3600)
    admin_alert_dedup_s: int = Field(default=900, ge=0)
    #: Alerts waiting in a process for its sender thread (and unsent messages kept while Telegram is
    #: down); past it, new alerts are counted, logged and dropped rather than held in memory.
    alert_buffer_size: int = Field(default=10_000, ge=10, le=1_000_000)
    alert_history_days: int = Field(default=7, ge=1, le=90)
    alert_history_max: int = Field(default=1000, ge=10, le=100_000)
    #: ``disable_expired_users`` disables no one, and raises a critical alert, when more than this
    #: fraction of the ACTIVE users would be disabled in one run (a wrong clock, a panel bug)
    subscriptions_disable_max_fraction: float = Field(default=0.10, gt=0, le=1)
    #: ... unless they are this many or fewer (a small panel's handful of expiries never trips it).
    subscriptions_disable_valve_min_users: int = Field(default=10, ge=0)
    #: Users per ``bulk/reset-traffic`` call in ``reset_monthly_traffic`` (the panel takes up to 500).
    subscriptions_reset_batch_size: int = Field(default=100, ge=1, le=500)
    #: The link reminders and the "switched off" notice give for renewing.
    #: auto_renew_subscriptions invoices users whose subscription ends within this many minutes.
    auto_renew_window_min: int = Field(default=60, ge=5, le=7 * 24 * 60)
    #: How long an auto-renew invoice can be paid (Crypto Pay's expires_in: 1 s to 31 days).
    auto_renew_invoice_expires_s: int = Field(default=86_400, ge=60, le=2_678_400)
    subscriptions_renew_url: str = Field(default="https://t.me/cybervpn_bot", pattern=r"^(https?|tg)://\S+$")
    #: A node going offline this many times within HEALTH_FLAP_WINDOW_S is "flapping": one alert for
    #: it, none per flap, resolved once it has been stable for the window.
    health_flap_downs: int = Field(default=2, ge=2, le=100)
    health_flap_window_s: int = Field(default=600, ge=60, le=86_400)
    #: A node back online is "resolved" once it has stayed up (or in maintenance) this long.
    health_resolve_after_s: int = Field(default=60, ge=0, le=3600)
    #: This many nodes going offline (or coming back) in one run make one grouped alert.
    health_group_min_nodes: int = Field(default=3, ge=2, le=1000)
    #: 9: the weekly report (Monday 07:00) reads the whole Monday–Sunday week before.
    health_history_days: int = Field(default=9, ge=1, le=90)
    #: Each dependency probe of ``check_external_services`` gives up after this long.
    service_probe_timeout_s: float = Field(default=5.0, gt=0, le=60)
    #: This many failed probes in a row make a dependency "down": one critical alert.
    service_down_after: int = Field(default=3, ge=1, le=100)
    bandwidth_retention_h: int = Field(default=48, ge=1, le=24 * 90)
    #: How long cybervpn:stats:daily:{date} and cybervpn:bandwidth:hourly:{node}:{hour} keys live.
    analytics_daily_ttl_days: int = Field(default=90, ge=1, le=3660)
    analytics_hourly_ttl_days: int = Field(default=30, ge=1, le=3660)
    #: cybervpn:dashboard:realtime expires this long after update_realtime_metrics last wrote it.
    analytics_realtime_ttl_s: int = Field(default=120, ge=30, le=86_400)
    #: cleanup_old_notifications deletes sent/failed notification_queue rows created longer ago than
    #: this (never pending ones).
    cleanup_notification_retention_days: int = Field(default=7, ge=1, le=3660)
    #: The PostgreSQL cleanup jobs delete this many rows per batch, each batch its own transaction,
    #: pausing this long between batches; a run stops between batches once its budget is spent (the
    #: next run continues) — at most TIME_LIMIT_MS - CLEANUP_STATEMENT_TIMEOUT_MS.
    cleanup_batch_size: int = Field(default=1000, ge=1, le=50_000)
    cleanup_batch_pause_ms: int = Field(default=0, ge=0, le=60_000)
    cleanup_time_budget_s: float = Field(default=300.0, gt=0, le=86_400)
    #: The cleanup session's statement_timeout and lock_timeout: a batch over either is rolled back
    #: and the run stops (the backend keeps its locks; the next run continues).
    cleanup_statement_timeout_ms: int = Field(default=5000, ge=100, le=600_000)
    cleanup_lock_timeout_ms: int = Field(default=1000, ge=10, le=600_000)
    #: ``jsonl:<absolute directory>``: cleanup_audit_logs archives each batch there (gzip JSONL per
    #: day, fsynced) before deleting it; unset: no archive.
    cleanup_audit_archive: str | None = None

    @field_validator("cleanup_audit_archive")
    @classmethod
    def _check_cleanup_audit_archive(cls, value: str | None) -> str | None:
        if not value:
            return None
        kind, colon, directory = value.partition(":")
        if kind != "jsonl" or not colon or not directory.startswith("/"):
            raise ValueError("expected jsonl:<absolute directory>, e.g. jsonl:/var/lib/cybervpn/audit")
        return value

    #: check_anomalies' thresholds (each rule alerts once when it trips and once when it clears).
    anomaly_node_offline_s: int = Field(default=300, ge=0, le=86_400)
    anomaly_error_rate_pct: float = Field(default=5.0, gt=0, le=100)
    anomaly_error_rate_window_s: int = Field(default=900, ge=60, le=86_400)
    #: Fewer message attempts than this in the window: the error rate is not judged (noise).
    anomaly_error_rate_min_tasks: int = Field(default=20, ge=1)
    anomaly_queue_depth_max: int = Field(default=500, ge=1)
    anomaly_payment_failure_pct: float = Field(default=10.0, gt=0, le=100)
    anomaly_payment_window_s: int = Field(default=3600, ge=60, le=7 * 86_400)
    anomaly_payment_min_count: int = Field(default=10, ge=1)
    anomaly_worker_memory_pct: float = Field(default=80.0, gt=0, le=100)
    #: A worker's memory limit when its cgroup sets none (0: the machine's RAM).
    worker_memory_limit_mb: int = Field(default=0, ge=0)
    #: Live event streams (GET /api/v1/events) one ``worker-app serve`` holds at once.
    api_events_max_clients: int = Field(default=50, ge=1, le=10_000)
    #: Threads (each one AMQP connection) that publish for ``worker-app serve``'s request threads.
    api_publisher_threads: int = Field(default=2, ge=1, le=64)
    #: A request waits this long for its publish (RabbitMQ's confirm), then answers 503.
    api_publish_timeout_s: float = Field(default=30.0, gt=0, le=600)
    #: Weekly report recommendations (actors/reports/rules.py): a currency's revenue down by more than
    #: this % on the week before; a node offline longer than this in the week; expired users up by more
    #: than this % on the week before; more paid payments than this not activated.
    reports_revenue_drop_pct: float = Field(default=20.0, gt=0, le=100)
    reports_node_offline_h: float = Field(default=2.0, gt=0, le=168)
    reports_expired_growth_pct: float = Field(default=10.0, gt=0)
    reports_unactivated_max: int = Field(default=0, ge=0)
    #: Nodes the reports list by traffic, and as the most troubled.
    reports_top_nodes: int = Field(default=5, ge=1, le=20)
    #: Seconds of silence after which a stream sends a keepalive comment (and notices a client gone).
    api_events_keepalive_s: float = Field(default=15.0, ge=0.5, le=300)
    cleanup_audit_retention_days: int = Field(default=90, ge=1)
    cleanup_webhook_retention_days: int = Field(default=30, ge=1)
    cleanup_job_retention_days: int = Field(default=30, ge=1)
    #: Users per panel call and per progress update of a bulk user operation (the panel takes ≤ 500).
    bulk_batch_size: int = Field(default=50, ge=1, le=500)
    #: Errors listed in a bulk operation's Telegram summary (all of them are in the job's result).
    bulk_summary_errors: int = Field(default=5, ge=0, le=50)
    #: Where exports are written: a local directory (the default), or S3-compatible object storage
    #: when EXPORT_S3_URL is set (``s3://bucket/prefix``, or ``http(s)://endpoint/bucket/prefix`` for
    #: MinIO and the like; credentials from boto3's usual sources, e.g. AWS_ACCESS_KEY_ID).
    export_dir: Path = Path("/tmp/cybervpn-exports")
    export_s3_url: str | None = None
    #: An export is kept (and its link works) this long, then deleted.
    export_ttl_h: int = Field(default=24, ge=1, le=24 * 30)
    #: Rows per database fetch and per write of an export.
    export_batch_rows: int = Field(default=1000, ge=10, le=100_000)
    #: Base of the download links sent to admins: where ``worker-app serve`` is reachable for them.
    export_public_url: str = "http://127.0.0.1:8000"
    #: HMAC key of the signed download links; unset: API_TOKEN (on loopback without one, a fixed
    #: development key).
    export_link_secret: SecretStr | None = None
    #: A broadcast's cap on (distinct) chat ids; larger audiences go through the bulk domain.
    broadcast_max_recipients: int = Field(default=100_000, ge=1, le=10_000_000)
    #: The queues ``worker-app worker`` / ``dramatiq worker_app`` consume when not given ``-Q``: a
    #: comma-separated list of domains (unset: every domain). ``ENABLE_<DOMAIN>=false`` removes one.
    #: One image serves every deployment: each worker group sets its own.
    worker_queues: Annotated[list[str], NoDecode] = Field(default_factory=list)
    #: Every ``ENABLE_*`` variable, as set (names upper-cased); only ``ENABLE_<domain>`` is read (see
    #: :meth:`enabled_queues`), a variable of another program is left alone.
    enable_env: dict[str, str] = Field(default_factory=dict)
    #: Every ``*_BATCH_LIMIT`` variable, as set (names upper-cased): ``<JOB>_BATCH_LIMIT`` caps how many
    #: items one run of a periodic job takes (:meth:`batch_limit`; the rest wait for the next run).
    #: ``scheduler.table`` refuses a bad value, or one naming a job that takes no batch; a name of no
    #: job at all is another program's variable, left alone.
    batch_limit_env: dict[str, str] = Field(default_factory=dict)
    #: How often each worker process reads the paused queues (``worker-app queues pause``): a pause
    #: takes effect within about twice this.
    queue_pause_poll_s: float = Field(default=2.0, ge=0.1, le=60)
    #: Telegram update handling (actors/bot_updates): the user code that handles one update,
    #: ``package.module:callable`` called as ``handler(update, trace_id)``, sync or ``async``; unset:
    #: ``POST /webhooks/telegram`` answers 503 and nothing is enqueued.
    bot_update_handler: str | None = Field(default=None, pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
    #: The ``secret_token`` given to Telegram's setWebhook: every delivery carries it in
    #: ``X-Telegram-Bot-Api-Secret-Token`` (Telegram allows 1-256 of ``A-Za-z0-9_-``); unset: the
    #: webhook answers 503.
    telegram_webhook_secret: SecretStr | None = None
    telegram_webhook_max_body_bytes: int = Field(default=262_144, ge=1024, le=16 * 1024 * 1024)
    #: Queues the updates are spread over by chat (each handled one update at a time); changing it
    #: moves chats between shards: drain ``bot_updates`` first.
    bot_update_shards: int = Field(default=16, ge=1, le=256)
    #: Retries of a failing update, in place (the chat waits), after BOT_UPDATE_BACKOFF_MS, then
    #: twice that, and so on; then it is dead-lettered and the chat's next update proceeds.
    bot_update_retries: int = Field(default=3, ge=0, le=10)
    bot_update_backoff_ms: int = Field(default=200, ge=0, le=60_000)
    #: An update handled is remembered this long by its update_id, so a redelivered copy (a worker
    #: killed after the handler ran, Telegram delivering again) is skipped; 0: no de-duplication.
    bot_update_dedup_ttl_s: int = Field(default=86_400, ge=0, le=30 * 86_400)
    #: The longest one update may take, every attempt and backoff included (then it fails as any
    #: failure does: retried in place while retries remain, else dead-lettered).
    bot_update_time_limit_ms: int = Field(default=60_000, ge=1000, le=3_600_000)

    metrics_port: int = Field(default=9090, ge=0, le=65535)
    metrics_dir: Path = Path("/tmp/cybervpn-prometheus")
    sentry_dsn: SecretStr | None = None
    sentry_environment: str = "development"

    rabbitmq_consumer_timeout_ms: int = Field(default=1_800_000, ge=1000)
    time_limit_ms: int = Field(default=600_000, ge=1000)
    delay_max_hold_ms: int = Field(default=300_000, ge=500)
    dead_letter_retention_days: int = Field(default=30, ge=30)
    #: At most 100: a quorum queue's own delivery limit (1000) is only a backstop behind it.
    max_redeliveries: int = Field(default=5, ge=2, le=100)

    scheduler_metrics_port: int = Field(default=9091, ge=0, le=65535)
    scheduler_leader_poll_s: float = Field(default=1.0, ge=0.1, le=5)
    scheduler_immediate: bool = False
    scheduler_pending_stale_s: int = Field(default=3600, ge=10)
    scheduler_fire_retention_days: int = Field(default=7, ge=1)
    scheduler_lock_name: str = Field(default="cybervpn-scheduler", min_length=1, max_length=64)
    #: A job whose queue no worker consumed for this long is not fired (recorded skipped: a deployment
    #: without that domain's workers, WORKER_QUEUES); a day, so a worker group down for a while or
    #: being redeployed never costs a fire (its messages wait in the queue).
    scheduler_consumer_grace_s: int = Field(default=86_400, ge=60, le=30 * 86_400)
    #: Every ``SCHEDULE_*`` variable, as set (names upper-cased); validated by ``scheduler.table``.
    schedule_env: dict[str, str] = Field(default_factory=dict)

    api_token: SecretStr | None = None
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65535)
    #: The largest request body the API reads (a broadcast to BROADCAST_MAX_RECIPIENTS ids fits).
    api_max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024, le=256 * 1024 * 1024)
    #: Actors producers may call through ``POST /api/v1/jobs`` (only those that exist are callable).
    api_actors: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: [
            "send_notification", "broadcast_message", "execute_bulk_user_operation",
            "execute_bulk_broadcast", "generate_data_export",
        ]
    )  # fmt: skip

    sandbox_host: str = "127.0.0.1"
    sandbox_telegram_port: int = Field(default=8081, ge=1, le=65535)
    sandbox_remnawave_port: int = Field(default=8082, ge=1, le=65535)
    sandbox_cryptobot_port: int = Field(default=8083, ge=1, le=65535)

    @field_validator("admin_telegram_ids", "critical_telegram_ids", mode="before")
    @classmethod
    def _split_ids(cls, value: Any) -> Any:
        if isinstance(value, str):
            parts = [p.strip() for p in value.split(",") if p.strip()]
            try:
                return [int(p) for p in parts]
            except ValueError:
                raise ValueError("expected comma-separated integer Telegram ids, e.g. 111,222") from None
        return value

    @field_validator("worker_queues", mode="before")
    @classmethod
    def _split_worker_queues(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [q.strip() for q in value.split(",") if q.strip()]
        return value

    @model_validator(mode="after")
    def _check_enabled_queues(self) -> Settings:
        self.enabled_queues()  # a typo in WORKER_QUEUES or ENABLE_<DOMAIN> stops start-up, naming it
        return self

    def enabled_queues(self) -> list[str]:
        """The domains this deployment's workers consume: WORKER_QUEUES (default every domain) less
        those with ``ENABLE_<DOMAIN>=false``."""
        from worker_app.policies import DOMAINS

        unknown = [q for q in self.worker_queues if q not in DOMAINS]
        if unknown:
            raise ValueError(
                f"WORKER_QUEUES: unknown queue(s) {', '.join(unknown)} (domains: {', '.join(DOMAINS)})"
            )
        disabled = set()
        for name, value in self.enable_env.items():
            domain = name.removeprefix("ENABLE_").lower()
            if domain not in DOMAINS:
                continue  # another program's ENABLE_* variable: only ENABLE_<domain> is ours
            if value.strip().lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError(f"{name}: expected true or false, not {value!r}")
            if value.strip().lower() in ("0", "false", "no", "off"):
                disabled.add(domain)
        return [q for q in (self.worker_queues or list(DOMAINS)) if q not in disabled]

    def batch_limit(self, job: str) -> int | None:
        """``<JOB>_BATCH_LIMIT`` for the periodic job ``job``: the most items one run takes, or
        ``None`` when unset (no cap beyond the job's own time budget). A bad value raises
        :class:`ConfigurationError` naming the variable: the scheduler checks every batched job's at
        start-up (``scheduler.table.resolve_jobs``); a worker whose environment differs fails the job
        run, naming it (dead-lettered with that line)."""
        name = f"{job.upper()}{BATCH_LIMIT_SUFFIX}"
        raw = self.batch_limit_env.get(name, "").strip()
        if not raw:
            return None
        try:
            value = int(raw)
        except ValueError:
            raise ConfigurationError(f"{name}: {raw!r} is not a whole number of items") from None
        if not 1 <= value <= 10_000_000:
            raise ConfigurationError(f"{name}: {raw!r} must be between 1 and 10000000")
        return value

    @field_validator("api_actors", mode="before")
    @classmethod
    def _split_actors(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [p.strip() for p in value.split(",") if p.strip()]
        return value

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: SecretStr) -> SecretStr:
        try:
            url = make_url(value.get_secret_value())
        except ArgumentError:
            raise ValueError("expected a URL like postgresql+psycopg://user@host:5432/dbname") from None
        if not url.drivername.startswith("postgresql"):
            raise ValueError("expected a postgresql:// or postgresql+psycopg:// URL")
        if url.drivername in ("postgresql", "postgres"):
            url = url.set(drivername="postgresql+psycopg")
        return SecretStr(url.render_as_string(hide_password=False))

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("expected a URL like redis://host:6379/0")
        return value

    @field_validator("telegram_webhook_secret")
    @classmethod
    def _check_telegram_webhook_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", value.get_secret_value()):
            raise ValueError("Telegram's secret_token is 1-256 characters of A-Z, a-z, 0-9, _ and -")
        return value

    @field_validator("rabbitmq_url")
    @classmethod
    def _check_rabbitmq_url(cls, value: SecretStr) -> SecretStr:
        urls = split_urls(value.get_secret_value())
        if not urls or not all(u.startswith(("amqp://", "amqps://")) for u in urls):
            raise ValueError(
                "expected a URL like amqp://user:password@host:5672/%2F, or several separated by commas "
                "(the nodes of a cluster)"
            )
        if len({urlsplit(u).path or "/" for u in urls}) > 1:
            raise ValueError("every URL must name the same vhost (the nodes of one cluster)")
        return value

    @property
    def rabbitmq_urls(self) -> list[str]:
        """RABBITMQ_URL's nodes, in the order connections try them (the next when one is down)."""
        return split_urls(self.rabbitmq_url.get_secret_value())

    @field_validator("export_s3_url")
    @classmethod
    def _check_export_s3_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        parsed = urlsplit(value)
        bucket = parsed.netloc if parsed.scheme == "s3" else parsed.path.strip("/").split("/", 1)[0]
        if parsed.scheme not in ("s3", "http", "https") or not parsed.netloc or not bucket:
            raise ValueError(
                "expected s3://bucket[/prefix] or http(s)://endpoint/bucket[/prefix] (an S3-compatible store)"
            )
        return value.rstrip("/")

    @field_validator(
        "remnawave_url", "telegram_api_url", "cryptobot_api_url", "rabbitmq_management_url",
        "export_public_url",
    )  # fmt: skip
    @classmethod
    def _check_http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("expected an http:// or https:// URL")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _bounds_below_consumer_timeout(self) -> Settings:
        bound = self.rabbitmq_consumer_timeout_ms
        if self.time_limit_ms >= bound:
            raise ValueError(
                f"TIME_LIMIT_MS ({self.time_limit_ms}) must be below "
                f"RABBITMQ_CONSUMER_TIMEOUT_MS ({bound}), or RabbitMQ closes the channel mid-task"
            )
        if self.notification_drain_budget_s * 1000 >= self.time_limit_ms:
            raise ValueError(
                f"NOTIFICATION_DRAIN_BUDGET_S ({self.notification_drain_budget_s}) must be below "
                f"TIME_LIMIT_MS ({self.time_limit_ms} ms), or the time limit kills a drain mid-batch"
            )
        if self.cleanup_statement_timeout_ms >= self.time_limit_ms:
            raise ValueError(
                f"CLEANUP_STATEMENT_TIMEOUT_MS ({self.cleanup_statement_timeout_ms}) must be below "
                f"TIME_LIMIT_MS ({self.time_limit_ms}), or the time limit kills a cleanup batch"
            )
        if self.delay_max_hold_ms >= bound:
            raise ValueError(
                f"DELAY_MAX_HOLD_MS ({self.delay_max_hold_ms}) must be below "
                f"RABBITMQ_CONSUMER_TIMEOUT_MS ({bound})"
            )
        return self

    @model_validator(mode="after")
    def _breaker_cooldowns(self) -> Settings:
        if self.telegram_breaker_max_cooldown_s < self.telegram_breaker_cooldown_s:
            raise ValueError(
                f"TELEGRAM_BREAKER_MAX_COOLDOWN_S ({self.telegram_breaker_max_cooldown_s}) must not be "
                f"below TELEGRAM_BREAKER_COOLDOWN_S ({self.telegram_breaker_cooldown_s})"
            )
        return self

    def secret_values(self) -> list[str]:
        """Every secret's plain value (tokens, and the password inside each URL), for redaction."""
        values: list[str] = []
        for name in SECRET_URL_NAMES:
            values.extend(_url_password(getattr(self, name.lower()).get_secret_value()))
        for name in SECRET_TOKEN_NAMES:
            secret = getattr(self, name.lower())
            if secret is not None:
                values.append(secret.get_secret_value())
        return [v for v in values if len(v) >= 4]


def split_urls(value: str) -> list[str]:
    """``a,b;c`` → ``[a, b, c]``: a setting naming several nodes (commas, or Dramatiq's semicolons)."""
    return [u.strip() for u in value.replace(";", ",").split(",") if u.strip()]


def _url_password(value: str) -> list[str]:
    found: list[str] = []
    for url in split_urls(value):
        try:
            password = make_url(url).password
        except ArgumentError:
            continue
        if password:
            found.append(str(password))
    return found


def _read_secret_files(environ: dict[str, str]) -> dict[str, Any]:
    """Fill ``NAME`` from the file named by ``NAME_FILE`` when ``NAME`` itself is not set."""
    found: dict[str, Any] = {}
    for name in SECRET_NAMES:
        path = environ.get(f"{name}_FILE")
        if path and name not in environ:
            try:
                found[name.lower()] = Path(path).read_text().strip()
            except OSError as e:
                raise ConfigurationError(f"{name}_FILE: cannot read {path!r}: {e.strerror}") from None
    return found


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    """Build settings from the environment; raise :class:`ConfigurationError` with one clear line."""
    env = dict(os.environ if environ is None else environ)
    try:
        overrides = _read_secret_files(env)
        overrides["schedule_env"] = {
            k.upper(): v for k, v in env.items() if k.upper().startswith("SCHEDULE_")
        }
        overrides["enable_env"] = {k.upper(): v for k, v in env.items() if k.upper().startswith("ENABLE_")}
        overrides["batch_limit_env"] = {
            k.upper(): v for k, v in env.items() if k.upper().endswith(BATCH_LIMIT_SUFFIX)
        }
        if environ is None:
            return Settings(**overrides)
        return _settings_from_mapping(env, overrides)
    except ValidationError as e:
        raise ConfigurationError(_describe(e)) from None


class _MappingSettings(Settings):
    """Settings read only from an explicit mapping (tests, tools), never from os.environ."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def _settings_from_mapping(env: dict[str, str], overrides: dict[str, Any]) -> Settings:
    lowered: dict[str, Any] = {k.lower(): v for k, v in env.items() if k.lower() in Settings.model_fields}
    lowered.update(overrides)
    return _MappingSettings(**lowered)


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    message = str(first["msg"]).removeprefix("Value error, ")
    if first["loc"]:
        message = f"{str(first['loc'][0]).upper()}: {message}"
    extra = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return f"invalid configuration: {message}{extra}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()
