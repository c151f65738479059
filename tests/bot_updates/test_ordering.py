"""Per-chat order across worker processes, with a worker killed and failing updates (issue 23's
ordering scenario, in the tests/reliability report format).

Two ``dramatiq worker_app -Q bot_updates`` processes (1 x 8 threads each) consume the 16 shards; the
test publishes updates through the app's broker (confirmed), chat ``i % CHATS`` for update ``i``, so
each chat's update ids increase in publish order. Every 50th update fails twice before it succeeds
(in place). When 30 % have run, one worker is SIGKILLed. Everything is read from the handler's own
log (``tests.bot_handlers.record``): per chat, the ids it ran must never go back (a duplicate of the
update running when the worker died may repeat it, nothing may overtake), and every id must be there.

The recovery time is per shard: for every chat the killed worker ran before it died (its shards),
the time from the kill to that chat's next update run by the survivor, which RabbitMQ made the
shard's active consumer; the report gives the slowest shard's, the note the median.

``RELIABILITY_SCALE=34 BOT_ORDERING_UPDATES=200000`` gives issue 23's 200,000 updates over 1,000
chats (``--timeout 3600``).
"""

from __future__ import annotations

import itertools
import os
import signal
import statistics
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib
import sqlalchemy as sa

from tests.fixtures.worker import wait_for, worker_group
from tests.reliability.report import SCALE, ScenarioReport, report, scaled

UPDATES = int(os.environ.get("BOT_ORDERING_UPDATES") or scaled(6000))
CHATS = 200 if SCALE == 1 else 1000
SHARDS_IN_FLIGHT = 16  # at most one update per shard is running when a worker dies


def updates(n: int) -> list[dict[str, Any]]:
    return [
        {"update_id": i, "message": {"message_id": i, "date": 0, "text": f"u{i}",
                                     "chat": {"id": 10_000 + i % CHATS, "type": "private"}}}
        for i in range(1, n + 1)
    ]  # fmt: skip


def handler_log(client: redis_lib.Redis, prefix: str) -> dict[str, list[int]]:
    keys = list(client.scan_iter(f"{prefix}:log:*", count=1000))
    pipe = client.pipeline(transaction=False)
    for k in keys:
        pipe.lrange(k, 0, -1)
    return {k.rsplit(":", 2)[-2] + ":" + k.rsplit(":", 1)[-1]: [int(x) for x in ids]
            for k, ids in zip(keys, pipe.execute(), strict=True)}  # fmt: skip


def shard_recoveries(client: redis_lib.Redis, prefix: str, killed_at: float) -> list[float]:
    """Sorted, for each chat the killed worker ran before the kill: seconds from the kill to its next
    run (by the survivor). The killed worker's pids are those that ran nothing after the kill."""
    runs = [(float(at), pid, chat) for at, pid, chat in
            (entry.split("|") for entry in client.lrange(f"{prefix}:ran_at", 0, -1))]  # fmt: skip
    alive = {pid for at, pid, _chat in runs if at > killed_at}
    theirs = {chat for at, pid, chat in runs if at <= killed_at and pid not in alive}
    next_run: dict[str, float] = {}
    for at, _pid, chat in runs:
        if chat in theirs and at > killed_at:
            next_run[chat] = min(at, next_run.get(chat, at))
    assert theirs and set(next_run) == theirs, "every chat of the killed worker ran again"
    return sorted(at - killed_at for at in next_run.values())


def ran(client: redis_lib.Redis, prefix: str) -> int:
    return int(client.llen(f"{prefix}:ran_at"))


@pytest.mark.timeout(600 * SCALE)
def test_one_chat_at_a_time_in_order_across_processes_with_a_worker_killed(
    tmp_path: Path, rabbitmq_vhost: str, clean_tables: sa.Engine, redis_client: redis_lib.Redis
) -> None:
    from actors.bot_updates import handle_bot_update

    prefix = f"order-{uuid.uuid4().hex[:6]}"
    env = {"BOT_UPDATE_HANDLER": "tests.bot_handlers:record", "BOT_TEST_PREFIX": prefix,
           "BOT_UPDATE_BACKOFF_MS": "20", "BOT_TEST_FAIL_EVERY": "50",
           "BOT_TEST_FAIL_TIMES": "2"}  # fmt: skip
    all_updates = updates(UPDATES)
    published: list[float] = []

    def publish() -> None:
        for u in all_updates:
            handle_bot_update.send(u)
        published.append(time.monotonic())

    def worker(name: str) -> Any:
        return worker_group(tmp_path / name, env, ("bot_updates",), processes=1, threads=8, modules=())

    with worker("w1.log") as first, worker("w2.log"):
        producer = threading.Thread(target=publish, name="producer")
        producer.start()
        wait_for(lambda: ran(redis_client, prefix) >= UPDATES * 0.3, scaled(300), "30 % of the updates")
        os.killpg(first.proc.pid, signal.SIGKILL)
        killed_at = time.time()
        first.proc.wait(timeout=60)
        producer.join(timeout=scaled(600))
        assert published, "the producer did not finish"
        expected = set(range(1, UPDATES + 1))

        def all_ran() -> bool:
            return {i for ids in handler_log(redis_client, prefix).values() for i in ids} >= expected

        wait_for(all_ran, scaled(600), "every update to run", poll_s=1)

    log = handler_log(redis_client, prefix)
    runs = [i for ids in log.values() for i in ids]
    violations = [(chat, a, b) for chat, ids in log.items() for a, b in itertools.pairwise(ids) if b < a]
    duplicated = len(runs) - len(set(runs))
    recoveries = shard_recoveries(redis_client, prefix, killed_at)
    attempts = redis_client.hgetall(f"{prefix}:attempts")
    failing = [i for i in range(50, UPDATES + 1, 50)]
    result = report(ScenarioReport(
        scenario="bot updates: per-chat order, one of 2 workers SIGKILLed",
        messages=UPDATES, processed=len(set(runs)), lost=len(expected - set(runs)), duplicated=duplicated,
        recovery_s=round(recoveries[-1], 2),
        note=f"{len(log)} chats, ordering violations {len(violations)}, every 50th failing twice; "
             f"{len(recoveries)} chats of the killed worker's shards moved on after a median "
             f"{statistics.median(recoveries):.2f} s",
    ))  # fmt: skip
    assert violations == []
    assert result.lost == 0
    assert duplicated <= SHARDS_IN_FLIGHT
    assert len(log) == CHATS
    assert all(int(attempts[str(i)]) >= 3 for i in failing)  # each ran a third time, in place
    trace_id, bound = str(redis_client.hget(f"{prefix}:trace", "7")).split("|")
    assert trace_id == bound  # the handler's trace id is the one bound to its logs and HTTP calls
