"""One database session per message: closed (uncommitted work rolled back) after every message,
and the engine's pool disposed when the worker shuts down."""

from __future__ import annotations

from typing import Any

import dramatiq

from worker_app.db import Database


class DbSessions(dramatiq.Middleware):
    """Scopes :meth:`Database.message_session` to the message being processed."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def after_process_message(
        self, broker: dramatiq.Broker, message: Any, *, result: Any = None, exception: Any = None
    ) -> None:
        self.database.close_message_session()

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        self.database.close_message_session()

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        self.database.dispose()
