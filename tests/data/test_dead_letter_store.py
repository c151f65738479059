"""Dead letters are durable: PostgreSQL first, the Redis spool when it is down, the log last."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
import sqlalchemy as sa

from worker_app.db import Database
from worker_app.dead_letters import SPOOL_KEY, DeadLetterRecord, DeadLetterStore, Recorded


def record(message_id: str) -> DeadLetterRecord:
    now = int(time.time() * 1000)
    return DeadLetterRecord(
        message_id=message_id,
        queue_name="payments",
        reason="permanent_error",
        actor_name="verify",
        args=[1],
        kwargs={},
        options={"trace_id": "t1"},
        exception_type="PermanentError",
        exception_message="boom",
        traceback="Traceback ...",
        first_failed_at=now,
        last_failed_at=now,
        trace_id="t1",
    )


@pytest.fixture
def make_store(redis_client: redis.Redis) -> Iterator[Callable[[str], DeadLetterStore]]:
    """Builds stores on given URLs and disposes their pools after the test."""
    stores: list[DeadLetterStore] = []

    def make(url: str) -> DeadLetterStore:
        stores.append(DeadLetterStore(Database(url), redis_client))
        return stores[-1]

    yield make
    for store in stores:
        store.database.dispose()


def rows(engine: sa.Engine) -> list[str]:
    with engine.connect() as conn:
        return [
            r.message_id for r in conn.execute(sa.text("SELECT message_id FROM dead_letters ORDER BY id"))
        ]


def test_record_while_postgresql_is_down_is_spooled_then_drained(
    clean_tables: sa.Engine, redis_client: redis.Redis, migrated_database: str, make_store: Any
) -> None:
    # Given a store whose database is unreachable
    down = make_store("postgresql+psycopg://postgres@127.0.0.1:1/nowhere")

    # When a dead letter is recorded, Then it waits in the Redis spool, new (its action is due)
    assert down.record(record("m-1")) == Recorded(True, "spool")
    assert redis_client.llen(SPOOL_KEY) == 1
    # and the same message spooled again (redelivered) is not new: its action ran already
    assert down.record(record("m-1")) == Recorded(False, "spool")

    # When the database is back, another dead letter is recorded and the spool is drained (every
    # worker process does so every DRAIN_EVERY_S)
    up = make_store(migrated_database)
    up.record(record("m-2"))
    assert up.drain() == 2

    # Then both are in PostgreSQL and the spool is empty
    assert sorted(rows(clean_tables)) == ["m-1", "m-2"]
    assert redis_client.llen(SPOOL_KEY) == 0


def test_the_same_message_dying_twice_is_one_row_with_its_latest_failure(
    clean_tables: sa.Engine, migrated_database: str, make_store: Any
) -> None:
    # Given a message recorded dead (then redelivered after a crash before its nack)
    store = make_store(migrated_database)
    first = store.record(record("m-1"))
    assert first.new and first.where == "postgres" and first.dead_letter_id is not None
    again = record("m-1")
    again.exception_message, again.attempts = "boom again", 2

    # When it is recorded again before its exhaustion action was marked done (its worker died in
    # between), Then the action is still due; once marked, a further copy finds nothing to do
    assert store.record(again) == Recorded(True, "postgres", first.dead_letter_id)
    store.mark_acted(first.dead_letter_id)
    assert store.record(again) == Recorded(False, "postgres", first.dead_letter_id)
    with clean_tables.connect() as conn:
        [row] = list(conn.execute(sa.text("SELECT * FROM dead_letters")))
    assert (row.exception_message, row.attempts) == ("boom again", 2)


def test_with_postgresql_and_redis_down_the_record_is_logged_whole(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given neither PostgreSQL nor Redis reachable
    nowhere = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=1)
    store = DeadLetterStore(Database("postgresql+psycopg://postgres@127.0.0.1:1/nowhere"), nowhere)

    # When a dead letter is recorded, Then the whole record is in a CRITICAL log line
    with caplog.at_level(logging.CRITICAL):
        store.record(record("m-lost-nowhere"))
    nowhere.close()
    store.database.dispose()
    [line] = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert '"message_id": "m-lost-nowhere"' in line.getMessage()
    assert '"traceback": "Traceback ..."' in line.getMessage()
