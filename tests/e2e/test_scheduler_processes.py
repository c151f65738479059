"""Tier 3: ``python -m scheduler`` processes started as a user would, against real PostgreSQL and
RabbitMQ. Every message the schedulers publish is counted on the queue itself (QueueRecorder)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

import psycopg
import pytest

import worker_app
from scheduler.fire import conninfo
from scheduler.leader import holders
from scheduler.table import JOBS
from tests.fixtures.chaos import pg_cluster
from tests.fixtures.scheduler import (
    QueueRecorder,
    Received,
    SchedulerProcess,
    leader_pid,
    purge,
    ready_count,
    schedulers,
    sessions,
    start_scheduler,
)
from tests.fixtures.worker import ROOT, wait_for

JOB = "scheduler_canary"
EVERY_SECOND = {
    # the canary is the only job these tests count messages of: every other job is off, so none
    # (check_anomalies every 5 minutes, say) lands on the monitoring queue mid-test
    **{f"SCHEDULE_{job.name.upper()}": "off" for job in JOBS if job.name != JOB},
    "SCHEDULE_SCHEDULER_CANARY": "every 1s",
    "SCHEDULE_SCHEDULER_CANARY_IMMEDIATE": "0",
    "LOG_FORMAT": "text",
}
FAILOVERS = int(os.environ.get("SCHEDULER_TEST_FAILOVERS", "20"))


@pytest.fixture
def monitoring_queue(scheduler_tables: str) -> str:
    worker_app.broker.declare_queue("monitoring", ensure=True)
    purge("monitoring")
    return "monitoring"


def connect(url: str) -> psycopg.Connection[Any]:
    return psycopg.connect(conninfo(url), autocommit=True, connect_timeout=3)


def per_slot(received: list[Received]) -> Counter[Any]:
    return Counter(r.slot for r in received)


def fired_lines(proc: SchedulerProcess) -> int:
    return proc.log().count(f"fired {JOB} @")


def test_two_schedulers_side_by_side_publish_exactly_one_message_per_slot(
    tmp_path: Path, monitoring_queue: str, scheduler_tables: str
) -> None:
    with QueueRecorder(monitoring_queue) as recorder, schedulers(tmp_path, EVERY_SECOND) as procs:
        wait_for(lambda: len(recorder.for_job(JOB)) >= 12, 40, "twelve canary fires")
        fired_while_both_ran = sorted(fired_lines(p) for p in procs)
        listing = subprocess.run(
            [str(Path(sys.executable).parent / "worker-app"), "schedules", "--json"],
            cwd=ROOT, env={**os.environ, **EVERY_SECOND}, capture_output=True, text=True, timeout=60,
            check=False,
        )  # fmt: skip
    received = recorder.for_job(JOB)
    counts = per_slot(received)
    slots = sorted(counts)
    assert max(counts.values()) == 1, f"a slot was published twice: {counts.most_common(3)}"
    expected = [slots[0] + timedelta(seconds=n) for n in range(len(slots))]
    assert slots == expected, "every one-second slot between the first and the last was published"
    assert all(r.claimed for r in received)
    # While both ran only the leader fired. (When the leader stops first at teardown, the standby
    # takes the lock and may fire a slot of its own before its own stop: that is failover working.)
    assert fired_while_both_ran[0] == 0 and fired_while_both_ran[1] > 0, "only the leader fired"
    assert sum(fired_lines(p) for p in procs) == len(received), "every fire is one message"

    assert listing.returncode == 0, listing.stderr
    table = {job["job"]: job for job in json.loads(listing.stdout)["jobs"]}
    assert table["process_notification_queue"]["disabled_reason"] == "SCHEDULE_PROCESS_NOTIFICATION_QUEUE=off"
    assert table[JOB]["schedule"] == "every 1s" and table[JOB]["enabled"]
    assert table[JOB]["last_fire"]["status"] == "started"
    assert json.loads(listing.stdout)["leader"].endswith(tuple(f":{p.pid}" for p in procs))


def test_kill_9_of_the_leader_fails_over_without_doubling_or_losing_slots(
    tmp_path: Path, monitoring_queue: str, scheduler_tables: str
) -> None:
    kills: list[tuple[float, float]] = []  # (kill time, first message published after it)
    with connect(scheduler_tables) as pg, QueueRecorder(monitoring_queue) as recorder:
        procs = [start_scheduler(tmp_path / f"scheduler-{n}.log", EVERY_SECOND) for n in range(2)]
        try:
            wait_for(lambda: recorder.for_job(JOB), 40, "the first canary fire")
            for n in range(FAILOVERS):
                wait_for(lambda: sessions(pg) == 2, 30, "two scheduler sessions")
                pid = wait_for(lambda: leader_pid(pg), 10, "a leader")
                leader = next(p for p in procs if p.pid == pid)
                os.kill(pid, signal.SIGKILL)
                killed_at = time.time()
                leader.proc.wait()
                procs.remove(leader)
                procs.append(start_scheduler(tmp_path / f"scheduler-{n + 2}.log", EVERY_SECOND))
                first_after = wait_for(
                    lambda: next((r for r in recorder.for_job(JOB) if r.received_at > killed_at), None),  # noqa: B023
                    15, f"a fire after kill {n + 1}",
                )  # fmt: skip
                kills.append((killed_at, first_after.received_at))
            after_last = len(recorder.for_job(JOB))
            wait_for(
                lambda: len(recorder.for_job(JOB)) > after_last, 15, "one more fire after the last failover"
            )
        finally:
            for proc in procs:
                proc.stop()
        wait_for(lambda: all(r.claimed is not None for r in recorder.received), 10, "every claim")

    received = recorder.for_job(JOB)
    counts = per_slot(received)
    ran = Counter(r.slot for r in received if r.claimed)
    assert max(ran.values()) == 1, f"a slot ran twice: {ran.most_common(3)}"
    duplicates = sum(c - 1 for c in counts.values())
    assert duplicates <= len(kills), "a duplicate message can only come from a leader killed mid-fire"
    slots = sorted(counts)
    missing = [
        slots[0] + timedelta(seconds=s)
        for s in range(int((slots[-1] - slots[0]).total_seconds()) + 1)
        if slots[0] + timedelta(seconds=s) not in counts
    ]
    for slot in missing:
        assert any(k - 2 <= slot.timestamp() <= back for k, back in kills), (
            f"slot {slot} lost outside a failover"
        )
    takeovers = [back - k for k, back in kills]
    assert max(takeovers) < 10, f"a standby took {max(takeovers):.1f} s to fire"
    print(
        f"\n{len(kills)} failovers: takeover max {max(takeovers):.2f} s, "
        f"mean {sum(takeovers) / len(kills):.2f} s; "
        f"{len(counts)} slots, {len(missing)} inside failover windows, {duplicates} duplicate messages "
        "(dropped by the worker claim), 0 slots run twice"
    )


@pytest.mark.exclusive  # stops PostgreSQL
def test_stopping_postgresql_stops_firing_and_one_process_resumes(
    tmp_path: Path, monitoring_queue: str, scheduler_tables: str
) -> None:
    with QueueRecorder(monitoring_queue) as recorder, schedulers(tmp_path, EVERY_SECOND) as procs:
        with connect(scheduler_tables) as pg:
            wait_for(lambda: sessions(pg) == 2 and len(recorder.for_job(JOB)) >= 3, 40, "a leader firing")
        stopped_at = time.time()
        try:
            pg_cluster("stop")

            # both processes notice, and several one-second slots pass with the database down
            def noticed() -> bool:
                return (
                    all("cannot reach PostgreSQL" in p.log() for p in procs) and time.time() > stopped_at + 5
                )

            wait_for(noticed, 30, "both schedulers to notice the database is down")
        finally:
            started_at = time.time()
            pg_cluster("start")
        wait_for(
            lambda: len([r for r in recorder.for_job(JOB) if r.received_at > started_at]) >= 3,
            60, "three fires after the restart",
        )  # fmt: skip
        with connect(scheduler_tables) as pg:
            wait_for(lambda: sessions(pg) == 2, 30, "both schedulers reconnected")
            leaders = [h for h in holders(pg, "cybervpn-scheduler") if h.leader]
        assert all(p.proc.poll() is None for p in procs), "no scheduler died"
    during = [r for r in recorder.for_job(JOB) if stopped_at + 1.5 < r.received_at < started_at]
    assert during == [], f"{len(during)} messages published while PostgreSQL was down"
    assert len(leaders) == 1
    ran = Counter(r.slot for r in recorder.for_job(JOB) if r.claimed)
    assert max(ran.values()) == 1
    logs = "".join(p.log() for p in procs)
    assert "lost the scheduler lock" in logs


def test_with_no_worker_a_two_second_job_never_queues_more_than_one_message(
    tmp_path: Path, monitoring_queue: str, scheduler_tables: str
) -> None:
    env = {**EVERY_SECOND, "SCHEDULE_SCHEDULER_CANARY": "every 2s"}
    with connect(scheduler_tables) as pg, schedulers(tmp_path, env, count=1):
        skipped = "SELECT count(*) FROM scheduler_fires WHERE status = 'skipped' AND job = 'scheduler_canary'"
        wait_for(lambda: pg.execute(skipped).fetchone() >= (4,), 40, "four skipped slots")
        assert ready_count(monitoring_queue) == 1
        statuses = dict(
            pg.execute(
                "SELECT status, count(*) FROM scheduler_fires WHERE job = 'scheduler_canary' GROUP BY status"
            ).fetchall()
        )  # other jobs (every 30 s) may fire meanwhile
    assert statuses["enqueued"] == 1


def test_a_bad_schedule_stops_start_up_naming_the_variable(tmp_path: Path, scheduler_tables: str) -> None:
    proc = start_scheduler(tmp_path / "bad.log", {"SCHEDULE_SCHEDULER_CANARY": "61 * * * *"})
    assert proc.proc.wait(timeout=60) == 2
    assert (
        "scheduler: SCHEDULE_SCHEDULER_CANARY: '61 * * * *' is not a valid crontab (minute field)"
        in proc.log()
    )


def test_an_idle_publisher_keeps_its_connection_and_logs_no_heartbeat_errors(
    tmp_path: Path, monitoring_queue: str, scheduler_tables: str
) -> None:
    """With a 2 s heartbeat the broker drops a connection idle for ~4 s; fires 10 s apart must
    still go out on a live connection with nothing logged about it."""
    env = {
        **EVERY_SECOND,
        "SCHEDULE_SCHEDULER_CANARY": "every 10s",
        "RABBITMQ_URL": os.environ["RABBITMQ_URL"] + "?heartbeat=2",
    }
    with QueueRecorder(monitoring_queue) as recorder, schedulers(tmp_path, env, count=1) as procs:
        wait_for(
            lambda: len([r for r in recorder.for_job(JOB) if r.kind == "scheduled"]) >= 3, 60, "three fires"
        )
    log = procs[0].log()
    assert "ERROR" not in log and "connection lost" not in log, log[-3000:]


def test_runs_missed_while_the_leader_was_paused_coalesce_into_one(
    tmp_path: Path, monitoring_queue: str, scheduler_tables: str
) -> None:
    """SIGSTOP the only scheduler for 4 s (a long GC pause, a frozen VM): on waking it fires the
    missed one-second slots once, not four times."""
    with QueueRecorder(monitoring_queue) as recorder, schedulers(tmp_path, EVERY_SECOND, count=1) as procs:
        wait_for(lambda: len(recorder.for_job(JOB)) >= 3, 40, "three fires")
        os.kill(procs[0].pid, signal.SIGSTOP)
        stopped_at = time.time()
        before = len(recorder.for_job(JOB))
        wait_for(  # a 4-second freeze, and nothing published during it
            lambda: time.time() > stopped_at + 4 and len(recorder.for_job(JOB)) == before,
            10,
            "a 4-second freeze",
        )
        os.kill(procs[0].pid, signal.SIGCONT)
        resumed_at = time.time()
        wait_for(
            lambda: any(r.received_at > resumed_at + 2 for r in recorder.for_job(JOB)), 20, "firing again"
        )
    slots = [r.slot.timestamp() for r in recorder.for_job(JOB)]
    paused = [s for s in slots if stopped_at + 1 < s <= resumed_at]
    assert len(paused) == 1, (
        f"slots fired for the pause: {paused} (stopped {stopped_at}, resumed {resumed_at}); all: {slots}\n"
        + procs[0].log()[-3000:]
    )
    assert len(slots) == len(set(slots))


def test_a_frozen_leader_is_replaced_and_fires_nothing_when_it_wakes(
    tmp_path: Path, monitoring_queue: str, scheduler_tables: str
) -> None:
    """A leader that stops talking without closing its socket (frozen VM, lost host): the server ends
    its lock session after idle_session_timeout, the standby takes over within 10 s, and the old
    leader, woken up, finds its lock gone and publishes nothing."""
    with (
        connect(scheduler_tables) as pg,
        QueueRecorder(monitoring_queue) as recorder,
        schedulers(tmp_path, EVERY_SECOND) as procs,
    ):
        wait_for(lambda: sessions(pg) == 2 and len(recorder.for_job(JOB)) >= 3, 40, "a leader firing")
        frozen = next(p for p in procs if p.pid == leader_pid(pg))
        os.kill(frozen.pid, signal.SIGSTOP)
        frozen_at = time.time()
        first = wait_for(
            lambda: next((r for r in recorder.for_job(JOB) if r.received_at > frozen_at + 1), None),
            20,
            "a takeover",
        )
        os.kill(frozen.pid, signal.SIGCONT)
        woke_at = time.time()
        wait_for(lambda: "lost the scheduler lock" in frozen.log(), 15, "the old leader to notice")
        wait_for(
            lambda: any(r.received_at > woke_at + 1 for r in recorder.for_job(JOB)),
            15,
            "firing after the wake-up",
        )
        assert leader_pid(pg) != frozen.pid
    assert first.received_at - frozen_at < 10, f"takeover took {first.received_at - frozen_at:.1f} s"
    fired_after_wake = frozen.log().split("lost the scheduler lock")[1].count(f"fired {JOB}")
    assert fired_after_wake == 0
    counts = per_slot(recorder.for_job(JOB))
    assert max(counts.values()) == 1, "no slot was published twice"
    assert woke_at > frozen_at


def test_schedules_run_enqueues_now_through_the_dedup_path(
    monitoring_queue: str, scheduler_tables: str
) -> None:
    cli = str(Path(sys.executable).parent / "worker-app")

    def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [cli, "schedules", "run", *args],
            cwd=ROOT,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    first = run(JOB)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith(f"enqueued {JOB} on monitoring: message ")
    second = run(JOB)
    assert second.returncode == 1
    assert "has not started yet" in second.stderr
    assert ready_count(monitoring_queue) == 1
    unknown = run("nope")
    assert unknown.returncode == 1 and "no periodic job named 'nope'" in unknown.stderr
    # every job in the table has its actor now (a missing one is tests/scheduler/test_table.py's);
    # a job switched off still runs by hand, saying so
    off = run("cleanup_old_notifications", SCHEDULE_CLEANUP_OLD_NOTIFICATIONS="off")
    assert off.returncode == 0, off.stderr
    assert off.stdout.startswith("enqueued cleanup_old_notifications on cleanup: message ")
    assert off.stdout.rstrip().endswith("(note: its schedule is SCHEDULE_CLEANUP_OLD_NOTIFICATIONS=off)")


def test_two_manual_runs_in_the_same_second_meet_no_pile_up_not_dedup(
    monitoring_queue: str, scheduler_tables: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two operator runs within one second are two requests: the second waits behind the first
    message ("has not started yet"), it is not the first's slot fired twice ("already fired")."""
    import importlib

    from click.testing import CliRunner

    from worker_app.cli import main

    cli_schedules = importlib.import_module("worker_app.cli.schedules")  # the module, not the command

    second = datetime.now(UTC).replace(microsecond=0)

    class SameSecond(datetime):
        ticks = 0

        @classmethod
        def now(cls, tz: tzinfo | None = None) -> SameSecond:
            cls.ticks += 1
            return cls.fromtimestamp(second.timestamp() + cls.ticks / 1e6, tz)

    monkeypatch.setattr(cli_schedules, "datetime", SameSecond)
    runner = CliRunner()
    first = runner.invoke(main, ["schedules", "run", JOB])
    assert first.exit_code == 0, first.output
    again = runner.invoke(main, ["schedules", "run", JOB])
    assert again.exit_code == 1
    assert "has not started yet" in again.stderr
    assert ready_count(monitoring_queue) == 1
