"""Tier 3: real ``dramatiq worker_app`` processes draining notification_queue over real RabbitMQ,
PostgreSQL and Redis, sending to the sandbox over HTTP; the sandbox's log is the proof."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from actors.notifications import process_notification_queue
from sandbox.server import RunningSandbox
from tests.fixtures.notifications import insert_rows
from tests.fixtures.worker import WorkerProcess, run_worker, wait_for


@contextmanager
def two_workers(tmp_path: Path, env: dict[str, str]) -> Iterator[list[WorkerProcess]]:
    """Two separate worker processes consuming the notifications queue."""
    with ExitStack() as stack:
        yield [
            stack.enter_context(run_worker(tmp_path / f"worker-{n}.log", env, queues=("notifications",)))
            for n in (1, 2)
        ]


def worker_env(sandbox: RunningSandbox, **extra: str) -> dict[str, str]:
    sandbox.state.add_token(os.environ["TELEGRAM_BOT_TOKEN"])
    return {"TELEGRAM_API_URL": sandbox.url, "NOTIFICATION_DRAINERS": "2", **extra}


def pending(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                sa.text("SELECT count(*) FROM notification_queue WHERE status = 'pending'")
            ).scalar_one()
        )


def statuses(engine: sa.Engine) -> Counter[str]:
    with engine.connect() as conn:
        return Counter(
            dict(
                conn.execute(sa.text("SELECT status, count(*) FROM notification_queue GROUP BY status")).all()
            )
        )


def test_two_worker_processes_send_each_of_5000_rows_exactly_once(
    tmp_path: Path,
    no_leftover_messages: None,
    sandbox: RunningSandbox,
    clean_tables: sa.Engine,
    redis_client: Any,
) -> None:
    # Given 5,000 due rows, each with a distinct text, and two worker processes
    insert_rows(clean_tables, list(range(10_000, 15_000)), text="row {i}")
    env = worker_env(sandbox, TELEGRAM_GLOBAL_RATE_PER_S="0", TELEGRAM_PER_CHAT_RATE_PER_S="0")
    with two_workers(tmp_path, env):
        # When two drains run at once
        process_notification_queue.send()
        process_notification_queue.send()
        wait_for(lambda: pending(clean_tables) == 0, 120, "every row to leave pending")
    # Then the sandbox received every text exactly once and every row is sent
    accepted = Counter(e["text"] for e in sandbox.state.received() if e["status"] == 200)
    assert len(accepted) == 5000
    assert [text for text, n in accepted.items() if n > 1] == []
    assert statuses(clean_tables) == Counter({"sent": 5000})
    # and both drains took part (each message has its own trace id, sent as X-Request-ID)
    assert len({e["request_id"] for e in sandbox.state.received()}) >= 2


def test_a_2000_row_drain_through_random_429s_sends_everything_once_within_the_rate(
    tmp_path: Path,
    no_leftover_messages: None,
    sandbox: RunningSandbox,
    clean_tables: sa.Engine,
    redis_client: Any,
) -> None:
    # Given Telegram answers 1 call in 200 with 429 retry_after=1, and a configured limit of 250/s
    rate = 250
    sandbox.state.set_faults(rate_limit_fraction=0.005, rate_limit_fraction_retry_after=1)
    insert_rows(clean_tables, list(range(20_000, 22_000)), text="notice {i}")
    env = worker_env(sandbox, TELEGRAM_GLOBAL_RATE_PER_S=str(rate))
    with two_workers(tmp_path, env):
        process_notification_queue.send()
        process_notification_queue.send()
        wait_for(lambda: pending(clean_tables) == 0, 180, "every row to leave pending")
    received = sandbox.state.received()
    accepted = Counter(e["text"] for e in received if e["status"] == 200)
    # Then every row is sent, none twice, and the 429s were retried without an attempt counted
    assert statuses(clean_tables) == Counter({"sent": 2000})
    assert len(accepted) == 2000 and max(accepted.values()) == 1
    assert sum(1 for e in received if e["status"] == 429) >= 9
    with clean_tables.connect() as conn:
        assert conn.execute(sa.text("SELECT max(attempts) FROM notification_queue")).scalar_one() == 0
    # and no one-second window saw more sends than the configured rate (plus one for the edges)
    times = sorted(float(e["received_at"]) for e in received)
    assert busiest_second(times) <= rate * 1.05 + 1, busiest_second(times)


def busiest_second(times: list[float]) -> int:
    """The most calls in any sliding one-second window."""
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= 1.0:
            start += 1
        best = max(best, end - start + 1)
    return best
