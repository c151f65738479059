"""PostgreSQL access: one bounded engine per process and one session per message.

The engine is created lazily (no connection at import time). Actors call :func:`session` to get
the session of the message being processed; the :class:`~worker_app.middleware.db.DbSessions`
middleware closes it (rolling back anything uncommitted) after every message and disposes the
engine on shutdown.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker

POOL_SIZE = 5
POOL_MAX_OVERFLOW = 10
POOL_RECYCLE_S = 3600

_message_session: ContextVar[Session | None] = ContextVar("cybervpn_message_session", default=None)


class Database:
    """The process's engine and session factory (bounded pool: 5 + 10 overflow, recycled hourly)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._engine: Engine | None = None
        self._factory: sessionmaker[Session] | None = None

    @property
    def engine(self) -> Engine:
        """The engine, created on first use; creating it does not connect."""
        if self._engine is None:
            self._engine = create_engine(
                self.url,
                pool_size=POOL_SIZE,
                max_overflow=POOL_MAX_OVERFLOW,
                pool_recycle=POOL_RECYCLE_S,
                pool_pre_ping=True,
            )
        return self._engine

    def new_session(self) -> Session:
        """A fresh session, not bound to any message."""
        if self._factory is None:
            self._factory = sessionmaker(self.engine, expire_on_commit=False)
        return self._factory()

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session inside one transaction: committed on success, rolled back on error."""
        with self.new_session() as s, s.begin():
            yield s

    def message_session(self) -> Session:
        """The session of the message running on this thread, opened on first use."""
        current = _message_session.get()
        if current is None:
            current = self.new_session()
            _message_session.set(current)
        return current

    def close_message_session(self) -> None:
        """Close this thread's message session, rolling back anything not committed."""
        current = _message_session.get()
        if current is not None:
            _message_session.set(None)
            current.close()

    def dispose(self) -> None:
        """Close every pooled connection (worker shutdown)."""
        if self._engine is not None:
            self._engine.dispose()
