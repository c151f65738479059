"""Scenario 9: RabbitMQ's consumer_timeout against actors that run close to their time limit.

RabbitMQ 3.10 closes a channel whose delivery stays unacked past ``consumer_timeout`` and redelivers
everything on it, while the worker that had it keeps running it: the same message then runs twice
at the same time. The timeout is lowered to 5 s at runtime; eight ``e2e_long_task`` messages of 4 s
each (time limit 4.5 s) run on a long-task pool configured as docs/design.md says (one queue,
``dramatiq_queue_prefetch`` = threads, so nothing waits unacked behind a running task).

Pass: each message ran exactly once, no two runs of one message overlapped, and the worker's log
shows no channel error. As a control, the same load with Dramatiq's default prefetch (2 x threads)
breaks the channel and runs messages twice (the hazard the configuration avoids).
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
import redis

import worker_app
from tests import e2e_actors
from tests.fixtures.chaos import CHANNEL_ERRORS
from tests.fixtures.worker import wait_for, worker_group
from tests.reliability.report import ScenarioReport, report

pytestmark = pytest.mark.exclusive  # lowers RabbitMQ's consumer_timeout

TASKS, TASK_S, THREADS = 8, 4.0, 2
ENV = {
    "RABBITMQ_CONSUMER_TIMEOUT_MS": "5000",
    "TIME_LIMIT_MS": "4500",
    "DELAY_MAX_HOLD_MS": "2000",
    "NOTIFICATION_DRAIN_BUDGET_S": "2",
    "CLEANUP_STATEMENT_TIMEOUT_MS": "2000",
}


def run_long_tasks(
    tmp_path: Path, redis_client: redis.Redis, prefetch: int
) -> tuple[Counter[int], int, str, float]:
    key = f"long-{uuid.uuid4().hex[:8]}"
    worker_app.broker.declare_queue("reports", ensure=True)
    env = {**ENV, "dramatiq_queue_prefetch": str(prefetch)}
    with worker_group(
        tmp_path / f"worker-{prefetch}.log", env, ("reports",), processes=1, threads=THREADS
    ) as worker:
        started = time.time()
        for n in range(TASKS):
            e2e_actors.e2e_long_task.send(key, n, TASK_S)
        wait_for(lambda: redis_client.llen(f"{key}:runs") >= TASKS, 90, "every task to finish", poll_s=0.5)
        time.sleep(TASK_S + 2)  # room for a redelivered copy to run
        took = time.time() - started
        log = worker.log()
    runs = Counter(json.loads(r)[0] for r in redis_client.lrange(f"{key}:runs", 0, -1))
    overlaps = sum(int(v) for v in redis_client.hvals(f"{key}:overlaps"))
    return runs, overlaps, log, took


def test_tasks_near_their_time_limit_run_once_and_no_channel_is_closed(
    consumer_timeout_5s: None, rabbitmq_vhost: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    runs, overlaps, log, took = run_long_tasks(tmp_path, redis_client, prefetch=THREADS)
    errors = [e for e in CHANNEL_ERRORS if e in log]
    report(ScenarioReport(
        scenario="consumer_timeout 5 s, eight 4 s tasks (time limit 4.5 s), prefetch = threads",
        messages=TASKS, processed=len(runs), lost=TASKS - len(runs),
        duplicated=sum(c - 1 for c in runs.values()), recovery_s=None,
        note=f"{overlaps} overlapping runs, channel errors: {errors or 'none'}; {took:.0f} s",
    ))  # fmt: skip
    assert sorted(runs) == list(range(TASKS)) and max(runs.values()) == 1, runs
    assert overlaps == 0
    assert errors == [], log[-3000:]


@pytest.mark.parametrize("prefetch", [2 * THREADS])
def test_control_with_the_default_prefetch_the_channel_is_closed(
    consumer_timeout_5s: None, rabbitmq_vhost: str, redis_client: redis.Redis, tmp_path: Path, prefetch: int
) -> None:
    _runs, _overlaps, log, _took = run_long_tasks(tmp_path, redis_client, prefetch=prefetch)
    assert "PRECONDITION_FAILED" in log, "a message prefetched behind two 4 s tasks waits > 5 s unacked"
