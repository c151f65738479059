"""The cleanup tests' data: rows of the backend's tables at chosen ages, on the test database."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from worker_app.config import Settings, load_settings
from worker_app.db import Database

NOW = datetime(2026, 12, 8, 3, 0, tzinfo=UTC)


def cleanup_settings(**overrides: Any) -> Settings:
    """Settings from the test environment; keyword arguments override them by env name."""
    return load_settings({**os.environ, **{k: str(v) for k, v in overrides.items()}})


@pytest.fixture
def database(clean_tables: sa.Engine) -> Iterator[Database]:
    """The test database (emptied), as the jobs get it."""
    db = Database(clean_tables.url.render_as_string(hide_password=False))
    yield db
    db.dispose()


def audit_logs(engine: sa.Engine, created: Sequence[datetime]) -> list[int]:
    """One audit log row per ``created`` moment; their ids."""
    with engine.begin() as conn:
        insert = sa.text(
            "INSERT INTO audit_logs (actor, action, entity_type, entity_id, details, created_at) "
            "SELECT 'admin:' || n, 'user.disable', 'user', n::text, "
            "jsonb_build_object('n', n, 'why', 'é'), at "
            "FROM unnest(CAST(:at AS timestamptz[])) WITH ORDINALITY AS u(at, n) RETURNING id"
        )
        return list(conn.execute(insert, {"at": list(created)}).scalars())


def notifications(engine: sa.Engine, rows: Sequence[tuple[str, datetime]]) -> list[Any]:
    """One ``notification_queue`` row per ``(status, created_at)``; their ids."""
    with engine.begin() as conn:
        insert = sa.text(
            "INSERT INTO notification_queue (telegram_id, message, notification_type, status, created_at) "
            "SELECT 1000 + n, 'hello ' || n, 'test', status, at "
            "FROM unnest(CAST(:status AS text[]), CAST(:at AS timestamptz[])) "
            "WITH ORDINALITY AS u(status, at, n) "
            "RETURNING id"
        )
        values = {"status": [s for s, _ in rows], "at": [a for _, a in rows]}
        return list(conn.execute(insert, values).scalars())


def tokens(engine: sa.Engine, rows: Sequence[tuple[datetime, datetime | None]]) -> list[Any]:
    """One refresh token per ``(expires_at, revoked_at)``; their ids."""
    with engine.begin() as conn:
        insert = sa.text(
            "INSERT INTO refresh_tokens (user_id, token_hash, expires_at, revoked_at) "
            "SELECT n, md5(random()::text || n), exp, rev "
            "FROM unnest(CAST(:exp AS timestamptz[]), CAST(:rev AS timestamptz[])) "
            "WITH ORDINALITY AS u(exp, rev, n) "
            "RETURNING id"
        )
        values = {"exp": [e for e, _ in rows], "rev": [r for _, r in rows]}
        return list(conn.execute(insert, values).scalars())


def webhook_logs(engine: sa.Engine, created: Sequence[datetime]) -> list[Any]:
    with engine.begin() as conn:
        insert = sa.text(
            "INSERT INTO webhook_logs (source, event_type, payload, created_at) "
            "SELECT 'cryptobot', 'invoice_paid', '{}', at FROM unnest(CAST(:at AS timestamptz[])) AS u(at) "
            "RETURNING id"
        )
        return list(conn.execute(insert, {"at": list(created)}).scalars())


def ids(engine: sa.Engine, table: str) -> set[Any]:
    with engine.connect() as conn:
        return set(conn.execute(sa.text(f"SELECT id FROM {table}")).scalars())


def days_ago(*days: float, now: datetime = NOW) -> list[datetime]:
    return [now - timedelta(days=d) for d in days]
