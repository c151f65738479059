"""Scenario 2: SIGTERM to a worker under load (a deploy, a scale-down, a node drain).

1,500 on-demand ``send_notification`` messages against a Telegram that answers in 100 ms, so
sixteen sends are in flight when SIGTERM reaches the dramatiq main process (as Kubernetes sends it
to PID 1). The in-flight sends must finish and be acked, the prefetched ones go back to the queue,
the process exits within its shutdown timeout, and a new worker sends the rest: every message once.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import sqlalchemy as sa

import worker_app
from actors.notifications import send_notification
from sandbox.server import RunningSandbox
from tests.fixtures.chaos import accepted, first_send_after, sends_per_text, telegram_env
from tests.fixtures.scheduler import queued_messages
from tests.fixtures.worker import wait_for, worker_group
from tests.reliability.report import ScenarioReport, report, scaled

MESSAGES = scaled(1500)
SHUTDOWN_TIMEOUT_S = 15


def test_sigterm_under_load_finishes_in_flight_sends_and_loses_nothing(
    tmp_path: Path, rabbitmq_vhost: str, sandbox: RunningSandbox, clean_tables: sa.Engine
) -> None:
    env = telegram_env(sandbox)
    sandbox.state.set_faults(latency_ms=100)
    worker_app.broker.declare_queue("notifications", ensure=True)
    args = {
        "queues": ("notifications",), "modules": (), "threads": 8,
        "extra": ("--worker-shutdown-timeout", str(SHUTDOWN_TIMEOUT_S * 1000)),
    }  # fmt: skip
    with worker_group(tmp_path / "worker-1.log", env, **args) as first:
        for i in range(MESSAGES):
            send_notification.send(50_000 + i, f"term {i}", "test")
        wait_for(lambda: len(accepted(sandbox)) >= MESSAGES * 0.3, scaled(120), "30 % of the sends")
        os.kill(first.proc.pid, signal.SIGTERM)
        term_at = time.time()
        code = first.proc.wait(timeout=SHUTDOWN_TIMEOUT_S + 30)
        exit_s = time.time() - term_at
        log = first.log()
    finished_after_term = len([e for e in accepted(sandbox) if float(e["received_at"]) >= term_at])
    sent_before_restart = len(sends_per_text(sandbox))

    restarted_at = time.time()
    with worker_group(tmp_path / "worker-2.log", env, **args):
        wait_for(lambda: len(sends_per_text(sandbox)) >= MESSAGES, scaled(120), "every message to be sent")
    # The second worker has stopped gracefully: every send it began has reached the sandbox, and a
    # message still queued is one that would be sent again by the next worker.
    texts = sends_per_text(sandbox)
    left = queued_messages("notifications", "notifications.DQ")
    first_after = first_send_after(sandbox, restarted_at)
    result = report(ScenarioReport(
        scenario=f"graceful stop (SIGTERM) during {MESSAGES:,} on-demand sends", messages=MESSAGES,
        processed=len(texts), lost=MESSAGES - len(texts), duplicated=sum(n - 1 for n in texts.values()),
        recovery_s=None if first_after is None else first_after - restarted_at,
        note=f"exited {exit_s:.1f} s after SIGTERM (timeout {SHUTDOWN_TIMEOUT_S} s) with code {code}; "
        f"{finished_after_term} in-flight sends finished after SIGTERM; {sent_before_restart} sent before "
        "the restart; recovery = new worker start to its first send",
    ))  # fmt: skip
    assert code == 0, log[-3000:]
    assert exit_s < SHUTDOWN_TIMEOUT_S, f"took {exit_s:.1f} s to stop"
    assert sent_before_restart < MESSAGES, "the stop came under load, with messages left to send"
    assert result.lost == 0
    assert result.duplicated == 0, texts.most_common(5)
    assert left == [], f"{len(left)} messages left to be sent again"
