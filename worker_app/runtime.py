"""The process's long-lived services (settings, database, Redis, clients), created once by
:func:`worker_app.bootstrap.bootstrap` without any network I/O and handed to actors through
:func:`get_runtime`."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import redis

from worker_app.clients.telegram import TelegramClient
from worker_app.config import Settings
from worker_app.db import Database
from worker_app.dead_letters import DeadLetterStore
from worker_app.redis_client import make_redis


@dataclass
class Runtime:
    """Services shared by every actor of this process."""

    settings: Settings
    database: Database = field(init=False)
    redis: redis.Redis = field(init=False)
    dead_letters: DeadLetterStore = field(init=False)

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
