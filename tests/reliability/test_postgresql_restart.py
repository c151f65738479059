"""Scenario 4: PostgreSQL restarts while 3,000 notification rows are being drained.

A worker (two drains of 50-row batches) and a scheduler (``process_notification_queue`` every 2 s)
run against Telegram answering in 5 ms. Mid-drain PostgreSQL is stopped (fast shutdown: every
session is cut) for 3 s and started again. The batches in flight fail their commit and roll back;
ticks meanwhile are skipped; the scheduler loses its lock and takes it again; the connection pools
replace their dead connections. Nobody is restarted by hand.

Pass: every row ends ``sent`` and none reaches Telegram twice: the batches whose commit PostgreSQL
cut off were recorded in the sent journal (Redis) as Telegram accepted them, and the next drains
settle those rows from it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from sandbox.server import RunningSandbox
from tests.fixtures.chaos import (
    postgresql_stopped,
    sends_per_text,
    telegram_env,
    unsent_rows,
    wait_for_service,
)
from tests.fixtures.notifications import insert_rows
from tests.fixtures.scheduler import start_scheduler
from tests.fixtures.worker import wait_for, worker_group
from tests.reliability.report import ScenarioReport, report, scaled

pytestmark = pytest.mark.exclusive  # stops PostgreSQL

ROWS = scaled(3000)
BATCH, DRAINERS = 50, 2
DOWN_S = 3  # how long PostgreSQL stays down


def test_a_postgresql_restart_mid_drain_loses_nothing_and_the_pools_recover(
    tmp_path: Path, sandbox: RunningSandbox, clean_tables: sa.Engine, scheduler_tables: str,
    redis_client: Any,
) -> None:  # fmt: skip
    env = {
        **telegram_env(sandbox),
        "NOTIFICATION_DRAINERS": str(DRAINERS), "NOTIFICATION_BATCH_SIZE": str(BATCH),
        "SCHEDULE_PROCESS_NOTIFICATION_QUEUE": "every 2s", "SCHEDULE_SCHEDULER_CANARY": "off",
        "SCHEDULE_PROCESS_NOTIFICATION_QUEUE_IMMEDIATE": "1",
    }  # fmt: skip
    sandbox.state.set_faults(latency_ms=5)
    insert_rows(clean_tables, list(range(80_000, 80_000 + ROWS)), text="pg {i}")
    scheduler = start_scheduler(tmp_path / "scheduler.log", env)
    try:
        with worker_group(tmp_path / "worker.log", env, ("notifications",), modules=(), threads=8) as worker:
            wait_for(lambda: len(sends_per_text(sandbox)) >= ROWS * 0.3, scaled(120), "30 % of the rows sent")
            with postgresql_stopped():
                stopped_at = time.time()
                time.sleep(DOWN_S)  # the outage itself
            wait_for_service(5432, "PostgreSQL")
            back_at = time.time()
            clean_tables.dispose()  # the test's own pool held connections PostgreSQL cut
            wait_for(lambda: unsent_rows(clean_tables) == 0, scaled(150), "every row to be sent", poll_s=0.5)
            assert worker.proc.poll() is None, "the worker survived the restart"
            worker_log = worker.log()
        assert scheduler.proc.poll() is None, "the scheduler survived the restart"
    finally:
        scheduler.stop()
    # The worker has stopped gracefully, so a send still in flight when the last row was marked
    # sent (a drain cut off by the restart whose rows another drain sent again) has reached the
    # sandbox by now; no row is left that a later drain could claim.
    texts = sends_per_text(sandbox)
    with clean_tables.connect() as conn:  # the first batch committed once PostgreSQL was back
        settled: Any = conn.execute(
            sa.text(
                "SELECT extract(epoch FROM min(updated_at)) FROM notification_queue "
                "WHERE updated_at > to_timestamp(:t)"
            ),
            {"t": back_at},
        ).scalar_one()
    result = report(ScenarioReport(
        scenario=f"PostgreSQL restart ({DOWN_S} s down) during a {ROWS:,}-row drain", messages=ROWS,
        processed=len(texts), lost=ROWS - len(texts), duplicated=sum(n - 1 for n in texts.values()),
        recovery_s=None if settled is None else float(settled) - back_at,
        note=f"down {back_at - stopped_at:.1f} s; recovery = PostgreSQL back to the first batch committed; "
        "sends of batches PostgreSQL cut off are settled from the sent journal",
    ))  # fmt: skip
    assert result.lost == 0, worker_log[-3000:]
    assert result.duplicated == 0
