"""The process's long-lived services (settings, database, Redis, clients), created once by
:func:`worker_app.bootstrap.bootstrap` without any network I/O and handed to actors through
:func:`get_runtime`."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, TypeVar, cast

import redis

from worker_app.alerts import AdminAlerts
from worker_app.clients.cryptobot import CryptoPayClient
from worker_app.clients.remnawave import RemnawaveClient
from worker_app.clients.telegram import TelegramClient
from worker_app.config import Settings
from worker_app.db import Database
from worker_app.dead_letters import DeadLetterStore
from worker_app.redis_client import make_redis
from worker_app.telegram.journal import SendJournal
from worker_app.telegram.sender import TelegramSender, build_sender

T = TypeVar("T")


@dataclass
class Runtime:
    """Services shared by every actor of this process."""

    settings: Settings
    database: Database = field(init=False)
    redis: redis.Redis = field(init=False)
    dead_letters: DeadLetterStore = field(init=False)
    stopping: threading.Event = field(init=False, default_factory=threading.Event)
    """Set when the worker begins to shut down (:class:`~worker_app.middleware.lifecycle.StopFlag`)."""
    services: dict[Callable[..., Any], Any] = field(init=False, default_factory=dict)
    """The domains' services made by :meth:`service`, by factory."""
    _services_lock: threading.RLock = field(init=False, repr=False, default_factory=threading.RLock)

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
    def remnawave(self) -> RemnawaveClient:
        """The Remnawave panel API client (sandbox by default), with its breaker and bounded concurrency."""
        s = self.settings
        return RemnawaveClient(
            s.remnawave_url,
            s.remnawave_api_token.get_secret_value(),
            timeout_s=s.remnawave_timeout_s,
            proxy_headers=s.remnawave_proxy_headers,
            api_key=s.remnawave_api_key.get_secret_value() if s.remnawave_api_key else None,
            max_concurrency=s.remnawave_max_concurrency,
            page_size=s.remnawave_page_size,
        )

    @cached_property
    def cryptobot(self) -> CryptoPayClient:
        """The Crypto Pay API client (sandbox by default), with its breaker; CRYPTOBOT_TIMEOUT_S per call."""
        s = self.settings
        return CryptoPayClient(
            s.cryptobot_api_url, s.cryptobot_token.get_secret_value(), timeout_s=s.cryptobot_timeout_s
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
    def send_journal(self) -> SendJournal:
        """Sends Telegram accepted, recorded at once so a crash does not send them again."""
        return SendJournal(self.redis)

    def service(self, factory: Callable[[Runtime], T]) -> T:
        """A domain's long-lived service for this process: ``factory(self)`` the first time it is
        asked for, the same object after that (one per runtime and factory; thread-safe). A domain
        keeps its own services (the notifications drainer, say) in its package this way."""
        with self._services_lock:
            if factory not in self.services:
                self.services[factory] = factory(self)
            return cast(T, self.services[factory])


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
