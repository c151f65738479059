"""Scenario 1: a worker killed with SIGKILL in the middle of 5,000 notification sends.

The outcome is read from the side effects only: rows in PostgreSQL and the calls the sandbox saw.
Every row must end ``sent``. A message Telegram accepted in a batch that had not committed when the
worker died is not sent again: the sent journal (Redis) recorded it the moment Telegram answered, and
the next drain settles it from there. Only a send whose HTTP request was in flight at the kill can
reach Telegram twice, so duplicates are bounded by the sends in flight (NOTIFICATION_SEND_CONCURRENCY
per process), not by the batches.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from actors.notifications import process_notification_queue
from sandbox.server import RunningSandbox
from tests.fixtures.chaos import accepted, children, first_send_after, ticking, unsent_rows
from tests.fixtures.notifications import insert_rows
from tests.fixtures.worker import wait_for, worker_group
from tests.reliability.report import ScenarioReport, report, scaled

ROWS = scaled(5000)
BATCH, DRAINERS = 50, 2
SENDS_IN_FLIGHT = 2 * 8  # two worker processes x NOTIFICATION_SEND_CONCURRENCY


@pytest.mark.parametrize("target", ["main process group", "one worker child"])
def test_a_worker_killed_mid_drain_loses_nothing(
    target: str, tmp_path: Path, rabbitmq_vhost: str, sandbox: RunningSandbox, clean_tables: sa.Engine,
    redis_client: Any,
) -> None:  # fmt: skip
    sandbox.state.add_token(os.environ["TELEGRAM_BOT_TOKEN"])
    insert_rows(clean_tables, list(range(30_000, 30_000 + ROWS)), text="kill {i}")
    env = {
        "TELEGRAM_API_URL": sandbox.url,
        "TELEGRAM_GLOBAL_RATE_PER_S": "0", "TELEGRAM_PER_CHAT_RATE_PER_S": "0",
        "NOTIFICATION_DRAINERS": str(DRAINERS), "NOTIFICATION_BATCH_SIZE": str(BATCH),
        "NOTIFICATION_DRAIN_BUDGET_S": "5", "NOTIFICATION_POLL_INTERVAL_S": "0",
    }  # fmt: skip

    with worker_group(tmp_path / "worker-1.log", env, ("notifications",), modules=()) as first:
        for _ in range(DRAINERS):
            process_notification_queue.send()
        wait_for(lambda: len(accepted(sandbox)) >= ROWS * 0.3, scaled(120), "30 % of the sends")
        if target == "one worker child":
            os.kill(children(first.proc.pid)[0], signal.SIGKILL)
        else:
            os.killpg(first.proc.pid, signal.SIGKILL)
        killed_at = time.time()
        first.proc.wait(timeout=60)
    sent_before = len(accepted(sandbox))
    with worker_group(tmp_path / "worker-2.log", env, ("notifications",), modules=()):
        restarted_at = time.time()
        wait_for(
            ticking(lambda: unsent_rows(clean_tables) == 0), scaled(180), "every row to be sent", poll_s=1.0
        )
    texts = Counter(e["text"] for e in accepted(sandbox))
    # recovery: from the kill to the first send by the replacement worker
    first_after = first_send_after(sandbox, restarted_at)
    assert first_after is not None, "the replacement worker sent"
    result = report(ScenarioReport(
        scenario=f"worker killed (SIGKILL, {target}) during {ROWS:,} sends", messages=ROWS,
        processed=len(texts), lost=ROWS - len(texts), duplicated=sum(n - 1 for n in texts.values()),
        recovery_s=first_after - killed_at,
        note=f"{sent_before} sent before the kill; recovery = kill to the replacement worker's first send",
    ))  # fmt: skip
    assert result.lost == 0
    with clean_tables.connect() as conn:
        assert (
            conn.execute(
                sa.text("SELECT count(*) FROM notification_queue WHERE status = 'sent'")
            ).scalar_one()
            == ROWS
        )
    assert result.duplicated <= SENDS_IN_FLIGHT, "only HTTP requests in flight at the kill"
