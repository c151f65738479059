"""Property: a cleanup job deletes exactly the rows due — never a ``pending`` notification, never a
row inside its retention or a token still valid — for random timestamps within hours of the bound, to
the microsecond, while the bound itself sits on a daylight-saving switch of the server's time zone.

The database sessions' ``TimeZone`` and the process's ``TZ`` are ``Europe/Berlin`` here: a retention
computed in local calendar days (``now() - interval '90 days'`` in a Berlin session) would be an hour
off across the switch, and these examples would catch it. Retention days are UTC days of 24 hours.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.cleanup import audit_logs as audit_job
from actors.cleanup import notifications as notifications_job
from actors.cleanup import tokens as tokens_job
from actors.cleanup.batches import Limits, delete_in_batches
from tests.cleanup.conftest import audit_logs, cleanup_settings, notifications, tokens
from worker_app.db import Database

#: Europe/Berlin's switches in 2026: 02:00 CET -> 03:00 CEST, and 03:00 CEST -> 02:00 CET.
DST_SWITCHES = (datetime(2026, 3, 29, 1, 0, tzinfo=UTC), datetime(2026, 10, 25, 1, 0, tzinfo=UTC))
HOUR_US = 3600 * 1_000_000
SETTINGS = cleanup_settings(CLEANUP_NOTIFICATION_RETENTION_DAYS=7, CLEANUP_AUDIT_RETENTION_DAYS=90)
LIMITS = Limits(batch_size=3)

#: Where the bound falls: a DST switch, moved by up to an hour either way.
bounds = st.builds(lambda switch, shift: switch + timedelta(microseconds=shift),
                   st.sampled_from(DST_SWITCHES), st.integers(-HOUR_US, HOUR_US))  # fmt: skip
#: A row's moment relative to the bound: exactly on it, a microsecond off, or anywhere within 3 hours.
offsets = st.sampled_from([0, -1, 1, -HOUR_US, HOUR_US]) | st.integers(-3 * HOUR_US, 3 * HOUR_US)


@pytest.fixture
def berlin(clean_tables: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[sa.Engine, Database]]:
    """The test database with every session in Europe/Berlin, and the process's TZ set to it too."""
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    url = clean_tables.url.update_query_dict({"options": "-c TimeZone=Europe/Berlin"})
    engine = sa.create_engine(url)
    database = Database(url.render_as_string(hide_password=False))
    with engine.connect() as conn:
        assert conn.execute(sa.text("SHOW TimeZone")).scalar_one() == "Europe/Berlin"
    yield engine, database
    database.dispose()
    engine.dispose()
    monkeypatch.delenv("TZ")
    time.tzset()


def remaining(engine: sa.Engine, table: str) -> set[Any]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text(f"SELECT id FROM {table}")).scalars()
        return set(rows)


def emptied(engine: sa.Engine, *tables: str) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text(f"TRUNCATE {', '.join(tables)}"))


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # fmt: skip
@given(bound=bounds, rows=st.lists(st.tuples(st.sampled_from(["pending", "sent", "failed"]), offsets),
                                   min_size=1, max_size=25))  # fmt: skip
def test_only_sent_or_failed_notifications_older_than_the_retention_are_deleted(
    berlin: tuple[sa.Engine, Database], bound: datetime, rows: list[tuple[str, int]]
) -> None:
    engine, database = berlin
    emptied(engine, "notification_queue")
    now = bound + timedelta(days=7)
    made = notifications(engine, [(status, bound + timedelta(microseconds=us)) for status, us in rows])

    delete_in_batches(database, "cleanup_test", notifications_job.targets(SETTINGS, now), LIMITS)

    due = {i for i, (status, us) in zip(made, rows, strict=True) if status != "pending" and us < 0}
    assert remaining(engine, "notification_queue") == set(made) - due


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # fmt: skip
@given(bound=bounds, offsets_us=st.lists(offsets, min_size=1, max_size=25))
def test_only_audit_logs_older_than_the_retention_are_deleted(
    berlin: tuple[sa.Engine, Database], bound: datetime, offsets_us: list[int]
) -> None:
    engine, database = berlin
    emptied(engine, "audit_logs")
    now = bound + timedelta(days=90)
    made = audit_logs(engine, [bound + timedelta(microseconds=us) for us in offsets_us])

    delete_in_batches(database, "cleanup_test", audit_job.targets(SETTINGS, now), LIMITS)

    assert remaining(engine, "audit_logs") == {i for i, us in zip(made, offsets_us, strict=True) if us >= 0}


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # fmt: skip
@given(now=bounds, rows=st.lists(st.tuples(offsets, st.none() | offsets), min_size=1, max_size=25))
def test_only_expired_or_revoked_tokens_are_deleted(
    berlin: tuple[sa.Engine, Database], now: datetime, rows: list[tuple[int, int | None]]
) -> None:
    engine, database = berlin
    emptied(engine, "refresh_tokens")
    at = [(now + timedelta(microseconds=exp), None if rev is None else now + timedelta(microseconds=rev))
          for exp, rev in rows]  # fmt: skip
    made = tokens(engine, at)

    deleted = delete_in_batches(database, "cleanup_test", tokens_job.targets(SETTINGS, now), LIMITS)

    valid = {i for i, (exp, rev) in zip(made, rows, strict=True) if exp >= 0 and rev is None}
    assert remaining(engine, "refresh_tokens") == valid
    assert sum(deleted.counts.values()) == len(made) - len(valid)
