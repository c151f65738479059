"""The process's long-lived services (settings, database, Redis, clients), created once by
:func:`worker_app.bootstrap.bootstrap` without any network I/O and handed to actors through
:func:`get_runtime`."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property

import redis

from worker_app.alerts import AdminAlerts
from worker_app.clients.telegram import TelegramClient
from worker_app.config import Settings
from worker_app.db import Database
from worker_app.dead_letters import DeadLetterStore
from worker_app.notifications.broadcast import refresh_progress
from worker_app.notifications.journal import SendJournal
from worker_app.notifications.queue import DrainConfig, QueueDrainer
from worker_app.notifications.sender import TelegramSender, build_sender
from worker_app.notifications.slots import DrainerSlots
from worker_app.redis_client import make_redis


@dataclass
class Runtime:
    """Services shared by every actor of this process."""

    settings: Settings
    database: Database = field(init=False)
    redis: redis.Redis = field(init=False)
    dead_letters: DeadLetterStore = field(init=False)
    stopping: threading.Event = field(init=False, default_factory=threading.Event)
    """Set when the worker begins to shut down (:class:`~worker_app.middleware.lifecycle.StopFlag`)."""

    def __post_init__(self) -> None:
        self.database = Database(self.settings.database_url.get_secret_value())
        self.redis = make_redis(self.settings.redis_url.get_secret_value())
        self.dead_letters = DeadLetterStore(self.database, self.redis)

    @cached_property
    def telegram(self) -> TelegramClient:
        """The Telegram Bot API client (sandbox by default)."""
        return TelegramClient(
            self.settings.telegram_api_url,
            self.settings.telegram_bot_token.get_secret_value(),
            timeout_s=self.settings.http_timeout_s,
            send_timeout_s=self.settings.telegram_send_timeout_s,
        )

    @cached_property
    def telegram_sender(self) -> TelegramSender:
        """Telegram sends inside the fleet-wide rate limits (TELEGRAM_*_RATE_PER_S; per process
        TELEGRAM_FALLBACK_RATE_PER_S while Redis is down), behind the breaker (TELEGRAM_BREAKER_*)."""
        return build_sender(self.settings, self.redis, self.telegram)

    @cached_property
    def alerts(self) -> AdminAlerts:
        """Admin alerts to ADMIN_TELEGRAM_IDS (critical ones also to CRITICAL_TELEGRAM_IDS),
        de-duplicated by fingerprint for ADMIN_ALERT_DEDUP_S, sent from a thread of their own."""
        s = self.settings
        return AdminAlerts(
            self.redis,
            self.telegram_sender,
            s.admin_telegram_ids,
            dedup_s=s.admin_alert_dedup_s,
            critical_ids=s.critical_telegram_ids,
            buffer_size=s.alert_buffer_size,
            history_days=s.alert_history_days,
            history_max=s.alert_history_max,
        )

    @cached_property
    def notification_drainer(self) -> QueueDrainer:
        """The ``notification_queue`` consumer, sending on NOTIFICATION_SEND_CONCURRENCY threads."""
        s = self.settings
        pool = ThreadPoolExecutor(s.notification_send_concurrency, thread_name_prefix="telegram-send")
        config = DrainConfig(
            batch_size=s.notification_batch_size,
            max_retries=s.notification_max_retries,
            budget_s=s.notification_drain_budget_s,
            max_wait_s=s.notification_max_wait_s,
            poll_interval_s=s.notification_poll_interval_s,
        )
        return QueueDrainer(
            self.database,
            self.telegram_sender,
            pool,
            config,
            stopping=self.stopping,
            after_batch=lambda ids: refresh_progress(self.database, self.redis, ids),
            journal=self.send_journal,
        )

    @cached_property
    def send_journal(self) -> SendJournal:
        """Sends Telegram accepted, recorded at once so a crash does not send them again."""
        return SendJournal(self.redis)

    @cached_property
    def drainer_slots(self) -> DrainerSlots:
        """Fleet-wide cap on concurrent drains (NOTIFICATION_DRAINERS)."""
        s = self.settings
        return DrainerSlots(
            self.redis, max_holders=s.notification_drainers, ttl_s=s.notification_drain_budget_s + 60
        )


_runtime: Runtime | None = None


def set_runtime(runtime: Runtime) -> None:
    """Install the process's runtime (done by bootstrap; tests may install their own)."""
    global _runtime
    _runtime = runtime


def get_runtime() -> Runtime:
    """The process's runtime; ``import worker_app`` installs it."""
    if _runtime is None:
        raise RuntimeError("worker_app is not bootstrapped: import worker_app first")
    return _runtime
