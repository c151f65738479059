"""Scenario 6: Telegram down or slow in the middle of 600 notification sends.

A worker (2 processes x 4 threads, two drains of 50-row batches, 60 sends/s shared through Redis)
drains 600 rows into the sandbox. After 150 are sent, Telegram goes **down** (every connection is
closed without an answer) or turns **slow** (every call hangs) for 8 s, then returns. The test
plays the scheduler's tick once a second.

The outcome is read from side effects only — rows in PostgreSQL, the calls the sandbox saw and the
worker's JSON log:

* every row ends ``sent``, none is lost; duplicates only from slow sends that Telegram accepted
  after the client had given up on them (at-least-once), so none when it is down;
* attempts are not burnt while the breaker is open: only the failures that opened it (at most
  TELEGRAM_BREAKER_FAILURES - 1 per worker process) cost a row one attempt;
* each breaker opened within the spec's 5 s of the outage (its WARNING's timestamp), and Telegram
  saw a handful of calls during the outage (the failures that opened it, sends in flight, probes)
  instead of one per due row;
* the breakers closed once Telegram was back (their INFO: a breaker closes on its process's next
  send after the cooldown, the probe) and sending resumed.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from sandbox.server import RunningSandbox
from tests.fixtures.chaos import accepted, telegram_env, ticking, unsent_rows
from tests.fixtures.notifications import insert_rows, rows
from tests.fixtures.worker import wait_for, worker_group
from tests.reliability.report import ScenarioReport, report
from worker_app.clients.breaker import BreakerConfig

ROWS, OUTAGE_S = 600, 8.0
PROCESSES, THREADS, SEND_CONCURRENCY = 2, 4, 8
FAULTS = {"down": ({"down": True}, {"down": False}), "slow": ({"latency_ms": 60_000}, {"latency_ms": 0})}


def log_events(log_text: str, logger: str) -> list[tuple[float, str]]:
    """(unix time, message) of every JSON log line from ``logger``."""
    events = []
    for line in log_text.splitlines():
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("logger") == logger:
            events.append((datetime.fromisoformat(record["ts"]).timestamp(), str(record["msg"])))
    return events


def calls_between(sandbox: RunningSandbox, start: float, end: float, dropped_calls: int) -> int:
    """Bot API sends that reached Telegram in [start, end): dropped ones plus those it answered."""
    answered = [e for e in sandbox.state.received() if start <= float(e["arrived_at"]) < end]
    return dropped_calls + len(answered)


@pytest.mark.parametrize("outage", sorted(FAULTS))
def test_telegram_down_or_slow_opens_the_breaker_and_nothing_is_lost_or_burnt(
    outage: str, tmp_path: Path, rabbitmq_vhost: str, sandbox: RunningSandbox, clean_tables: sa.Engine,
    redis_client: Any,
) -> None:  # fmt: skip
    failures = BreakerConfig().failures
    insert_rows(clean_tables, list(range(50_000, 50_000 + ROWS)), text="outage {i}")
    env = {
        **telegram_env(sandbox), "TELEGRAM_GLOBAL_RATE_PER_S": "60", "LOG_FORMAT": "json",
        "NOTIFICATION_DRAINERS": "2", "NOTIFICATION_BATCH_SIZE": "50", "NOTIFICATION_DRAIN_BUDGET_S": "10",
        "NOTIFICATION_POLL_INTERVAL_S": "0", "NOTIFICATION_SEND_CONCURRENCY": str(SEND_CONCURRENCY),
    }  # fmt: skip
    fault_on, fault_off = FAULTS[outage]
    with worker_group(
        tmp_path / "worker.log", env, ("notifications",), modules=(), processes=PROCESSES, threads=THREADS
    ) as worker:
        wait_for(ticking(lambda: len(accepted(sandbox)) >= 150), 60, "150 sends before the outage")
        # When Telegram goes down (or slow) for 8 s
        sandbox.state.set_faults(**fault_on)
        down_at = time.time()
        wait_for(ticking(lambda: time.time() - down_at >= OUTAGE_S), OUTAGE_S + 5, "the outage to last")
        dropped_calls = int(sandbox.state.stats()["by_status"].get("dropped", 0))
        sandbox.state.set_faults(**fault_off)
        back_at = time.time()
        # Then, Telegram back, every row is sent in the end (those that failed before a breaker
        # opened after their 30 s backoff)
        wait_for(ticking(lambda: unsent_rows(clean_tables) == 0), 60, "every row to be sent", poll_s=1.0)
        assert worker.proc.poll() is None, "the worker is still running"
        breaker_log = log_events(worker.log(), "worker_app.clients.breaker")

    texts = Counter(e["text"] for e in accepted(sandbox))
    calls_during = calls_between(sandbox, down_at, back_at, dropped_calls)
    opened = [t for t, msg in breaker_log if "circuit breaker opened" in msg]
    closed = [t for t, msg in breaker_log if "circuit breaker closed" in msg]
    resumed = min(float(e["arrived_at"]) for e in accepted(sandbox) if float(e["arrived_at"]) >= back_at)
    attempts = Counter(r["attempts"] for r in rows(clean_tables))
    result = report(ScenarioReport(
        scenario=f"Telegram {outage} for {OUTAGE_S:.0f} s during {ROWS} sends", messages=ROWS,
        processed=len(texts), lost=ROWS - len(texts), duplicated=sum(n - 1 for n in texts.values()),
        recovery_s=resumed - back_at,
        note=f"breaker opened {', '.join(f'{t - down_at:.2f} s' for t in opened)} into the outage; "
        f"{calls_during} calls reached Telegram while it was {outage}; {attempts[1]} rows spent one attempt; "
        "recovery = Telegram back to the first send accepted",
    ))  # fmt: skip

    assert result.lost == 0
    assert attempts.keys() <= {0, 1} and attempts[1] <= PROCESSES * (failures - 1)
    assert opened and all(0 <= t - down_at < 5.0 for t in opened), "the breaker opens within 5 s"
    assert len(opened) <= PROCESSES, "one WARNING per process and outage, not one per message"
    # (a process that has nothing left to send keeps its breaker open until its next send probes)
    assert closed and all(t >= back_at for t in closed), "closed by a probe once Telegram is back"
    in_flight_and_probes = PROCESSES * (failures + SEND_CONCURRENCY + 2)
    assert calls_during <= in_flight_and_probes, "an open breaker sends nothing but its probes"
    if outage == "down":
        assert result.duplicated == 0
    else:  # a hanging send Telegram accepted late is sent again: at-least-once, bounded
        assert result.duplicated <= calls_during
