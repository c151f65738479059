"""Scenario 3: RabbitMQ restarts during a producer burst and a queue drain.

Running at once: a producer publishing 2,000 on-demand ``send_notification`` messages with
publisher confirms (retrying a publish that got an error instead of a confirm), a worker sending
them, 2,000 due ``notification_queue`` rows, and a scheduler firing ``process_notification_queue``
every 2 s. Mid-burst the RabbitMQ application is stopped for 3 s and started again: every
connection is cut, durable queues and persistent messages stay on disk.

Pass: every confirmed publish is sent, every row ends ``sent``, nobody is restarted by hand, the
worker and the scheduler are back at work within 30 s of RabbitMQ's return.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import worker_app
from actors.notifications import send_notification
from sandbox.server import RunningSandbox
from tests.fixtures.chaos import (
    first_send_after,
    port_open,
    rabbitmq_stopped,
    sends_per_text,
    telegram_env,
    unsent_rows,
)
from tests.fixtures.notifications import insert_rows
from tests.fixtures.scheduler import queued_messages, start_scheduler
from tests.fixtures.worker import wait_for, worker_group
from tests.reliability.report import ScenarioReport, report, scaled

pytestmark = pytest.mark.exclusive  # stops RabbitMQ

BURST, ROWS = scaled(2000), scaled(2000)
DOWN_S = 3.0
RECONNECT_BOUND_S = 30.0


class Producer(threading.Thread):
    """Publishes the burst at about 150 messages/s; a publish that raises is retried until confirmed."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.confirmed: list[int] = []
        self.errors = 0
        self.gave_up = ""

    def run(self) -> None:
        for i in range(BURST):
            while True:
                try:
                    send_notification.send(60_000 + i, f"burst {i}", "test")
                except Exception:
                    self.errors += 1
                    try:  # a thread cannot fail the test: it reports, and the test asserts
                        wait_for(lambda: port_open(5672), 60, "RabbitMQ to accept connections again")
                    except BaseException as e:
                        self.gave_up = str(e)
                        return
                    continue
                self.confirmed.append(i)
                break
            time.sleep(1 / 150)


def scheduler_fires_after(engine: sa.Engine, moment: float) -> float | None:
    with engine.connect() as conn:
        first: Any = conn.execute(
            sa.text(
                "SELECT extract(epoch FROM min(fired_at)) FROM scheduler_fires "
                "WHERE status IN ('enqueued', 'started') AND fired_at > to_timestamp(:t)"
            ),
            {"t": moment},
        ).scalar_one()
    return None if first is None else float(first)


def test_a_rabbitmq_restart_mid_burst_loses_nothing_and_everyone_reconnects(
    tmp_path: Path, sandbox: RunningSandbox, clean_tables: sa.Engine, scheduler_tables: str,
    redis_client: Any,
) -> None:  # fmt: skip
    env = {
        **telegram_env(sandbox), "NOTIFICATION_DRAINERS": "1", "NOTIFICATION_BATCH_SIZE": "50",
        "SCHEDULE_PROCESS_NOTIFICATION_QUEUE": "every 2s", "SCHEDULE_SCHEDULER_CANARY": "off",
        "SCHEDULE_PROCESS_NOTIFICATION_QUEUE_IMMEDIATE": "1",
    }  # fmt: skip
    sandbox.state.set_faults(latency_ms=20)
    insert_rows(clean_tables, list(range(70_000, 70_000 + ROWS)), text="row {i}")
    worker_app.broker.declare_queue("notifications", ensure=True)
    producer = Producer()
    scheduler = start_scheduler(tmp_path / "scheduler.log", env)
    try:
        with worker_group(tmp_path / "worker.log", env, ("notifications",), modules=(), threads=8) as worker:
            producer.start()
            wait_for(lambda: len(producer.confirmed) >= BURST * 0.3, scaled(60), "30 % of the burst sent")
            with rabbitmq_stopped():
                stopped_at = time.time()
                time.sleep(DOWN_S)
            back_at = time.time()
            producer.join(timeout=120)
            assert not producer.is_alive() and not producer.gave_up, producer.gave_up or "the burst is done"
            wait_for(
                lambda: len(sends_per_text(sandbox)) >= BURST + ROWS and unsent_rows(clean_tables) == 0,
                scaled(120), "every burst message and every row to be sent", poll_s=0.5,
            )  # fmt: skip
            assert worker.proc.poll() is None, "the worker survived the restart"
            worker_log = worker.log()
        assert scheduler.proc.poll() is None, "the scheduler survived the restart"
    finally:
        scheduler.stop()
    # The worker has stopped gracefully: every send it began has reached the sandbox. A burst message
    # still queued would be sent again by the next worker; drain ticks left over find no row to send.
    texts = sends_per_text(sandbox)
    left = [
        m
        for m in queued_messages("notifications", "notifications.DQ")
        if m["actor_name"] == "send_notification"
    ]
    expected = {f"burst {i}" for i in producer.confirmed} | {f"row {i}" for i in range(ROWS)}
    lost = expected - set(texts)
    worker_back = first_send_after(sandbox, back_at)
    scheduler_back = scheduler_fires_after(clean_tables, back_at)
    assert worker_back is not None and scheduler_back is not None, "worker and scheduler at work again"
    recovery = max(worker_back, scheduler_back) - back_at
    report(ScenarioReport(
        scenario=f"RabbitMQ restart (3 s down) during a {BURST:,}-message burst and a {ROWS:,}-row drain",
        messages=len(expected), processed=len(expected & set(texts)), lost=len(lost),
        duplicated=sum(n - 1 for n in texts.values()) + len(left), recovery_s=recovery,
        note=f"{producer.errors} publish errors retried by the producer; worker sending again "
        f"{worker_back - back_at:.1f} s and scheduler firing again {scheduler_back - back_at:.1f} s "
        f"after RabbitMQ was back; down {back_at - stopped_at:.1f} s; {len(left)} burst messages "
        "still queued after the worker stopped (counted as duplicates)",
    ))  # fmt: skip
    assert not lost, sorted(lost)[:10]
    assert recovery <= RECONNECT_BOUND_S, worker_log[-3000:]
