"""Scenario 8: a message that kills its worker process (``os._exit``, a segfault, the OOM killer).

RabbitMQ redelivers it with its body unchanged, so Dramatiq's retry count never grows, and a
dramatiq main process shuts its whole group down when one child dies: without a bound it would take
the fleet down on every restart, forever. The test plays the supervisor (Kubernetes, systemd)
that restarts the worker whenever it exits, with the killer queued among 300 healthy messages.

Pass: after MAX_REDELIVERIES redeliveries the killer is recorded dead (``redelivery_limit``), the
worker then stays up, and every healthy message ran.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import redis
import sqlalchemy as sa

import worker_app
from tests import e2e_actors
from tests.fixtures.worker import wait_for, wait_until_consuming, worker_group
from tests.reliability.report import ScenarioReport, report

HEALTHY = 300
MAX_REDELIVERIES = 2


def dead_letters(engine: sa.Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(sa.text("SELECT actor_name, reason, args FROM dead_letters")))


def killer_dead(engine: sa.Engine) -> bool:
    return any(r.reason == "redelivery_limit" for r in dead_letters(engine))


def test_a_message_that_kills_its_process_is_dead_lettered_and_the_fleet_recovers(
    tmp_path: Path, rabbitmq_vhost: str, clean_tables: sa.Engine, redis_client: redis.Redis
) -> None:
    key = f"killer-{uuid.uuid4().hex[:8]}"
    worker_app.broker.declare_queue("analytics", ensure=True)
    for n in range(HEALTHY):
        if n == HEALTHY // 3:
            e2e_actors.e2e_exit_process.send(f"{key}:killer-runs")
        e2e_actors.e2e_replay_count.send(f"{key}:healthy", n)

    env = {"MAX_REDELIVERIES": str(MAX_REDELIVERIES)}
    restarts, first_crash_at, dead_at = 0, None, None
    deadline = time.monotonic() + 100
    while dead_at is None and time.monotonic() < deadline:
        with worker_group(
            tmp_path / f"worker-{restarts}.log", env, ("analytics",), processes=1, wait_consuming=False
        ) as worker:
            wait_for(
                lambda w=worker: w.proc.poll() is not None or killer_dead(clean_tables),
                max(1.0, deadline - time.monotonic()), "the worker to crash or the killer to be dead",
            )  # fmt: skip
            if killer_dead(clean_tables):
                dead_at = time.time()
            elif worker.proc.poll() is not None:  # the killer took this worker down: restart it
                first_crash_at = first_crash_at or time.time()
                restarts += 1
        if dead_at is not None:
            with worker_group(tmp_path / "worker-after.log", env, ("analytics",), processes=1) as survivor:
                wait_for(
                    lambda: redis_client.hlen(f"{key}:healthy") >= HEALTHY, 60, "every healthy message to run"
                )
                wait_until_consuming(survivor, ["analytics"])  # still up, still serving
                assert survivor.proc.poll() is None, "the worker stays up once the killer is dead"
    assert dead_at is not None, f"the killer was never dead-lettered ({restarts} restarts)"

    runs = {int(n): int(c) for n, c in redis_client.hgetall(f"{key}:healthy").items()}
    killer_runs = int(redis_client.get(f"{key}:killer-runs") or 0)
    dead = dead_letters(clean_tables)
    result = report(ScenarioReport(
        scenario="message that kills its process (os._exit), among 300 healthy ones", messages=HEALTHY + 1,
        processed=len(runs) + 1, lost=HEALTHY - len(runs), duplicated=sum(c - 1 for c in runs.values()),
        recovery_s=dead_at - (first_crash_at or dead_at),
        note=f"killer ran {killer_runs} times, {restarts} worker restarts, then dead as redelivery_limit "
        f"(MAX_REDELIVERIES={MAX_REDELIVERIES}); recovery = first crash to the dead-letter record",
    ))  # fmt: skip
    assert [(r.actor_name, r.reason) for r in dead] == [("e2e_exit_process", "redelivery_limit")], (
        "only the killer is dead; no healthy message was taken for it"
    )
    assert killer_runs == MAX_REDELIVERIES + 1
    assert restarts == killer_runs
    assert result.lost == 0
