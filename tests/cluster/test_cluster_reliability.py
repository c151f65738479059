"""Reliability scenarios on the three-node cluster with quorum queues (issue 22): one report line each,
in the format of tests/reliability, every figure counted from side effects (what the sandbox's
Telegram accepted, the scheduler's fire rows), none from logs.

1. The node leading ``notifications`` is SIGKILLed during a confirmed burst of 5,000 publishes that
   two worker processes drain.
2. A rolling restart of the three nodes, one at a time, as RabbitMQ's upgrade guide has it
   (``rabbitmq-queues check_if_node_is_quorum_critical``, ``rabbitmq-upgrade drain``, stop, start,
   ``rabbitmq-upgrade revive``), during
   ``CLUSTER_LOAD_S`` seconds of steady load — a producer at 50 messages/s and the scheduler firing
   its canary every 5 s. The issue asks for 600 s (``CLUSTER_LOAD_S=600``); the default, 240, keeps
   ``.ci/run`` under 30 minutes and restarts the three nodes just the same.
3. The node every client is connected to is cut off from the other two (a network partition of its
   Erlang distribution, :meth:`Cluster.partition`) for ``PARTITION_S``: with
   ``cluster_partition_handling = pause_minority`` it pauses itself and closes its clients'
   connections, they fail over to the majority, and it rejoins when the partition heals.

Every process connects with ``RABBITMQ_URL`` naming the three nodes, node 1 first, so each starts on
node 1 and moves to the next node that answers when its own goes. The workers are never restarted.

Recovery is measured from the fault to the first message processed through a surviving node: the
first send after the longest pause in sends within ``RECOVERY_WINDOW_S`` of the fault. Messages the
workers took before it are still sent at first (a killed node's in-flight messages, or everything a
node delivers while it shuts down); then the sends stop until the consumers have reconnected to
another node (Dramatiq restarts a consumer after 3 s) and resume through it. A client that was not on
the node taken away shows no pause, and its recovery is the time to its next send.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pika
import pytest
import sqlalchemy as sa

from sandbox.server import RunningSandbox
from tests.fixtures.chaos import children, sends_per_text, telegram_env
from tests.fixtures.cluster import Cluster, ClusterError
from tests.fixtures.scheduler import start_scheduler
from tests.fixtures.worker import ROOT, wait_for, worker_group
from tests.reliability.report import ScenarioReport, report, scaled

pytestmark = [pytest.mark.rabbitmq, pytest.mark.exclusive, pytest.mark.timeout(600)]

PROCESSES, THREADS = 2, 4
IN_FLIGHT = PROCESSES * THREADS * 2  # Dramatiq prefetches 2 messages per worker thread
BURST = scaled(5000)
RATE = 50  # messages/s of the steady load
LOAD_S = float(os.environ.get("CLUSTER_LOAD_S", "240"))  # the full run: 600
PARTITION_S = 20.0
RECOVERY_TARGET_S = 10.0
RECOVERY_WINDOW_S = 60.0
CANARY_EVERY_S = 5
ONLY_THE_CANARY = {
    "SCHEDULE_SCHEDULER_CANARY": f"every {CANARY_EVERY_S}s",
    "SCHEDULE_SCHEDULER_CANARY_IMMEDIATE": "1",
    "SCHEDULE_PROCESS_NOTIFICATION_QUEUE": "off",
    "SCHEDULE_CHECK_SERVER_HEALTH": "off",
    "SCHEDULE_COLLECT_BANDWIDTH_SNAPSHOTS": "off",
    "SCHEDULE_CHECK_EXTERNAL_SERVICES": "off",
    "SCHEDULE_SAMPLE_QUEUE_DEPTHS": "off",
}


@pytest.fixture
def cluster_vhost(rabbitmq_cluster: Cluster) -> Iterator[str]:
    """A vhost of the cluster's for one scenario (its quorum queues get a member on every node: the
    three run when it is made); deleted after, with every node running again."""
    name = f"cybervpn-cluster-{uuid.uuid4().hex[:8]}"
    rabbitmq_cluster.add_vhost(name)
    yield name
    rabbitmq_cluster.heal()
    rabbitmq_cluster.delete_vhost(name)


def cluster_env(cluster: Cluster, vhost: str, sandbox: RunningSandbox) -> dict[str, str]:
    return {
        **telegram_env(sandbox),
        "RABBITMQ_URL": cluster.vhost_url(vhost),
        "RABBITMQ_QUEUE_TYPE": "quorum",
    }


@dataclass
class Producer:
    """A running ``tests.fixtures.cluster_producer`` and the file it reports to."""

    proc: subprocess.Popen[bytes]
    out: Path

    def _lines(self) -> list[str]:
        return self.out.read_text().splitlines() if self.out.exists() else []

    def confirmed(self) -> set[int]:
        return {int(line.split()[1]) for line in self._lines() if line.startswith("ok ")}

    def errors(self) -> list[str]:
        return [line for line in self._lines() if line.startswith("error ")]

    def finished(self) -> bool:
        return self.proc.poll() is not None

    def completed(self) -> bool:
        return "done" in self._lines()


@contextmanager
def producing(
    tmp_path: Path, env: dict[str, str], count: int, rate: float, prefix: str
) -> Iterator[Producer]:
    out = tmp_path / f"producer-{prefix}.out"
    command = [sys.executable, "-m", "tests.fixtures.cluster_producer", "--count", str(count),
               "--rate", str(rate), "--prefix", prefix, "--out", str(out)]  # fmt: skip
    with (tmp_path / f"producer-{prefix}.log").open("wb") as log:
        proc = subprocess.Popen(
            command, cwd=ROOT, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT
        )
    producer = Producer(proc, out)
    try:
        yield producer
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def on_running_nodes(cluster: Cluster, vhost: str, queues: tuple[str, ...]) -> dict[str, tuple[int, int]]:
    """``{queue: (ready messages, consumers)}`` asked through the first running node that answers."""
    parameters = [pika.URLParameters(url) for url in cluster.vhost_url(vhost).split(",")]
    with pika.BlockingConnection(parameters) as connection:
        channel = connection.channel()
        found = {}
        for queue in queues:
            declared = channel.queue_declare(queue, passive=True).method
            found[queue] = (int(declared.message_count), int(declared.consumer_count))
        return found


def consuming(cluster: Cluster, vhost: str, *queues: str) -> bool:
    """Every queue of ``queues`` exists with a consumer in each worker process."""
    try:
        counts = on_running_nodes(cluster, vhost, queues)
    except (pika.exceptions.AMQPError, ClusterError):
        return False
    return all(consumers == PROCESSES for _ready, consumers in counts.values())


def send_times(sandbox: RunningSandbox) -> list[float]:
    return sorted(float(e["received_at"]) for e in sandbox.state.received() if e["status"] == 200)


def recovery_s(sandbox: RunningSandbox, fault_at: float) -> float | None:
    """Seconds from ``fault_at`` to the first send after the longest pause in sends within
    ``RECOVERY_WINDOW_S`` of it (see the module's docstring); None when nothing was sent after it."""
    times = [t for t in send_times(sandbox) if fault_at <= t <= fault_at + RECOVERY_WINDOW_S]
    previous, longest, resumed = fault_at, -1.0, None
    for at in times:
        if at - previous > longest:
            longest, resumed = at - previous, at
        previous = at
    return None if resumed is None else resumed - fault_at


def sent_after(sandbox: RunningSandbox, moment: float) -> bool:
    return any(t > moment for t in send_times(sandbox))


def all_sent(sandbox: RunningSandbox, texts: set[str]) -> bool:
    return texts <= set(sends_per_text(sandbox))


def duplicates_and_leftovers(
    sandbox: RunningSandbox, cluster: Cluster, vhost: str, expected: set[str]
) -> tuple[int, int, int]:
    """(messages processed, duplicate sends, messages still queued) once the workers have stopped.
    Every expected message has been sent by then, so a message still queued is a duplicate the next
    worker would send again."""
    texts = sends_per_text(sandbox)
    left = sum(
        ready for ready, _ in on_running_nodes(cluster, vhost, ("notifications", "notifications.DQ")).values()
    )
    return len(expected & set(texts)), sum(n - 1 for n in texts.values()), left


def message_report(
    scenario: str, sandbox: RunningSandbox, cluster: Cluster, vhost: str, expected: set[str], fault_at: float,
    note: str,
) -> ScenarioReport:  # fmt: skip
    """The scenario's report line for the ``send_notification`` messages it published (``expected``):
    processed, lost, duplicated (messages still queued included) and recovery after ``fault_at``."""
    processed, duplicated, left = duplicates_and_leftovers(sandbox, cluster, vhost, expected)
    return report(ScenarioReport(
        scenario=scenario, messages=len(expected), processed=processed, lost=len(expected) - processed,
        duplicated=duplicated + left, recovery_s=recovery_s(sandbox, fault_at),
        note=f"{note}; {left} still queued after the workers stopped (counted as duplicates)",
    ))  # fmt: skip


def test_the_notifications_leader_sigkilled_mid_burst_loses_no_message(
    tmp_path: Path, rabbitmq_cluster: Cluster, cluster_vhost: str, sandbox: RunningSandbox,
    clean_tables: sa.Engine, redis_client: Any,
) -> None:  # fmt: skip
    cluster, env = rabbitmq_cluster, cluster_env(rabbitmq_cluster, cluster_vhost, sandbox)
    sandbox.state.set_faults(latency_ms=20)
    log = tmp_path / "worker.log"
    with worker_group(log, env, ("notifications",), modules=(), processes=PROCESSES, threads=THREADS,
                      wait_consuming=False) as worker:  # fmt: skip
        wait_for(
            lambda: consuming(cluster, cluster_vhost, "notifications"), 60, "both worker processes consuming"
        )
        leader = wait_for(lambda: cluster.leader("notifications", cluster_vhost), 30, "the queue's leader")
        members = cluster.quorum_status("notifications", cluster_vhost)
        assert len(members) == 3, members
        processes_before = children(worker.proc.pid)
        with producing(tmp_path, env, BURST, 0, "burst") as producer:
            wait_for(
                lambda: len(producer.confirmed()) >= BURST * 0.3, scaled(120), "30 % of the burst confirmed"
            )
            killed_at = time.time()
            cluster.kill(leader)
            wait_for(producer.finished, scaled(300), "the producer to finish")
            assert producer.completed(), producer.out.read_text()[-2000:]
            confirmed = producer.confirmed()
            errors = producer.errors()
        expected = {f"burst {i}" for i in confirmed}
        wait_for(lambda: all_sent(sandbox, expected), scaled(240), "every confirmed message sent", poll_s=0.5)
        assert worker.proc.poll() is None and children(worker.proc.pid) == processes_before, (
            "no worker restart"
        )
        new_leader = cluster.leader("notifications", cluster_vhost)
    result = message_report(
        f"cluster: leader of notifications ({leader}) SIGKILLed during a {BURST:,}-publish burst drained by "
        f"{PROCESSES} worker processes", sandbox, cluster, cluster_vhost, expected, killed_at,
        f"killed after {int(BURST * 0.3):,}+ confirms; new leader {new_leader}; {len(errors)} publish "
        f"attempts failed and were retried; in-flight bound {IN_FLIGHT} + retried publishes",
    )  # fmt: skip
    assert result.lost == 0
    assert len(confirmed) == BURST
    assert result.duplicated <= IN_FLIGHT + len(errors), "duplicates only from messages in flight at the kill"
    assert new_leader is not None and new_leader != leader
    assert result.recovery_s is not None and result.recovery_s < RECOVERY_TARGET_S, log.read_text()[-3000:]


def canary_fires(engine: sa.Engine) -> list[tuple[Any, str]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT scheduled_at, status FROM scheduler_fires WHERE job = 'scheduler_canary' "
                "AND kind = 'scheduled' ORDER BY scheduled_at"
            )
        ).all()
    return [(row[0], row[1]) for row in rows]


def waiting_fires(engine: sa.Engine, until: float) -> int:
    """Canary fires published up to ``until`` that no worker has started yet."""
    with engine.connect() as conn:
        return int(conn.execute(sa.text(
            "SELECT count(*) FROM scheduler_fires WHERE job = 'scheduler_canary' AND status = 'enqueued' "
            "AND scheduled_at <= to_timestamp(:until)"
        ), {"until": until}).scalar_one())  # fmt: skip


def quorum_critical(cluster: Cluster, node: str) -> bool:
    """Whether stopping ``node`` now would leave some quorum queue without a majority (RabbitMQ's
    own check before a node of a cluster is stopped)."""
    try:
        cluster.ctl(node, "check_if_node_is_quorum_critical", tool="rabbitmq-queues")
    except ClusterError:
        return True
    return False


def restart(cluster: Cluster, node: str, sandbox: RunningSandbox) -> tuple[str, float]:
    """Restart ``node`` as RabbitMQ's upgrade guide does it: once no quorum queue needs it for a
    majority, put it in maintenance mode (``rabbitmq-upgrade drain``: its queue leaders move to other
    nodes, its clients are disconnected), stop it, start it, take it out of maintenance mode
    (``revive``). Waits for sends after that; returns (node, when the drain began)."""
    wait_for(lambda: not quorum_critical(cluster, node), 120, f"{node} not quorum-critical")
    stopped_at = time.time()
    cluster.ctl(node, "drain", tool="rabbitmq-upgrade")
    cluster.stop(node)
    cluster.start(node)
    cluster.ctl(node, "revive", tool="rabbitmq-upgrade")
    started_at = time.time()
    wait_for(lambda: sent_after(sandbox, started_at), 60, f"sends after {node} is back")
    return node, stopped_at


@pytest.mark.timeout(int(LOAD_S) + 900)  # the load, three restarts and the drain after it
def test_a_rolling_restart_of_the_three_nodes_under_steady_load_loses_nothing(
    tmp_path: Path, rabbitmq_cluster: Cluster, cluster_vhost: str, sandbox: RunningSandbox,
    clean_tables: sa.Engine, scheduler_tables: str, redis_client: Any,
) -> None:  # fmt: skip
    cluster = rabbitmq_cluster
    env = {**cluster_env(cluster, cluster_vhost, sandbox), **ONLY_THE_CANARY}
    count = int(LOAD_S * RATE)
    restarts: list[tuple[str, float]] = []  # (node, stopped at)
    log = tmp_path / "worker.log"
    scheduler = start_scheduler(tmp_path / "scheduler.log", env)
    try:
        with worker_group(log, env, ("notifications", "monitoring"), modules=(), processes=PROCESSES,
                          threads=THREADS, wait_consuming=False) as worker:  # fmt: skip
            wait_for(
                lambda: consuming(cluster, cluster_vhost, "notifications", "monitoring"), 60, "consumers"
            )
            processes_before = children(worker.proc.pid)
            with producing(tmp_path, env, count, RATE, "steady") as producer:
                started = time.monotonic()
                for n, node in enumerate(cluster.nodes):
                    # the restarts at a quarter, half and three quarters of the load
                    time.sleep(max(0.0, started + LOAD_S * (n + 1) / 4 - time.monotonic()))
                    restarts.append(restart(cluster, node.name, sandbox))
                wait_for(producer.finished, LOAD_S + scaled(300), "the steady load to end")
                assert producer.completed(), producer.out.read_text()[-2000:]
                confirmed, errors = producer.confirmed(), producer.errors()
            expected = {f"steady {i}" for i in confirmed}
            wait_for(
                lambda: all_sent(sandbox, expected), scaled(240), "every confirmed message sent", poll_s=0.5
            )
            assert worker.proc.poll() is None and children(worker.proc.pid) == processes_before, "no restart"
            fires_until = time.time()
            wait_for(lambda: not waiting_fires(clean_tables, fires_until), 30, "every fire so far to run")
        assert scheduler.proc.poll() is None, "the scheduler was never restarted"
    finally:
        scheduler.stop()
    fires = [(at, status) for at, status in canary_fires(clean_tables) if at.timestamp() <= fires_until]
    slots = [at for at, _ in fires]
    missing = [
        slots[0] + timedelta(seconds=s)
        for s in range(0, int((slots[-1] - slots[0]).total_seconds()) + 1, CANARY_EVERY_S)
        if slots[0] + timedelta(seconds=s) not in set(slots)
    ]
    not_run = [at for at, status in fires if status == "enqueued"]
    skipped = Counter(status for _, status in fires)["skipped"]
    processed, duplicated, left = duplicates_and_leftovers(sandbox, cluster, cluster_vhost, expected)
    recoveries = {name.split("@")[0]: recovery_s(sandbox, at) for name, at in restarts}
    worst = None if None in recoveries.values() else max(r for r in recoveries.values() if r is not None)
    result = report(ScenarioReport(
        scenario=f"cluster: rolling restart of the 3 nodes during {LOAD_S:.0f} s of {RATE} msg/s and the "
        f"scheduler firing every {CANARY_EVERY_S} s",
        messages=len(expected) + len(fires), processed=processed + len(fires) - len(not_run) - skipped,
        lost=len(expected) - processed + len(missing) + len(not_run),
        duplicated=duplicated + left, recovery_s=worst,
        note=f"{len(expected):,} messages and {len(fires)} scheduled fires; recovery per restart "
        + ", ".join(f"{name} {r if r is None else round(r, 1)} s" for name, r in recoveries.items())
        + f"; {len(errors)} publish attempts retried; {len(missing)} slots without a fire; "
        f"{len(not_run)} fires published and never run; {skipped} slots skipped by design (the previous "
        f"fire not started yet: no pile-up); {left} still queued after the workers stopped",
    ))  # fmt: skip
    assert result.lost == 0, (missing[:5], not_run)
    assert len(confirmed) == count
    assert len(restarts) == 3
    # The pause each restart causes is reported, not bounded: the pass for this scenario is no
    # lost message, no lost fire and no restart. Draining a node that leads queues pauses their
    # consumers on the other nodes while the leaders move (3-16 s here: docs/scaling.md).


def test_a_partitioned_node_s_clients_fail_over_and_nothing_is_lost_when_it_rejoins(
    tmp_path: Path, rabbitmq_cluster: Cluster, cluster_vhost: str, sandbox: RunningSandbox,
    clean_tables: sa.Engine, redis_client: Any,
) -> None:  # fmt: skip
    cluster, env = rabbitmq_cluster, cluster_env(rabbitmq_cluster, cluster_vhost, sandbox)
    cut, survivor = cluster.nodes[0], cluster.nodes[1]  # node 1: where every client connected
    count = int((PARTITION_S + 40) * RATE)
    names = sorted(n.name for n in cluster.nodes)
    log = tmp_path / "worker.log"
    try:
        with worker_group(log, env, ("notifications",), modules=(), processes=PROCESSES, threads=THREADS,
                          wait_consuming=False) as worker:  # fmt: skip
            wait_for(
                lambda: consuming(cluster, cluster_vhost, "notifications"), 60, "both processes consuming"
            )
            processes_before = children(worker.proc.pid)
            leader = cluster.leader("notifications", cluster_vhost)
            with producing(tmp_path, env, count, RATE, "steady") as producer:
                wait_for(lambda: len(producer.confirmed()) >= 10 * RATE, 60, "10 s of steady load")
                cut_at = time.time()
                cluster.partition(cut, PARTITION_S)
                wait_for(lambda: sent_after(sandbox, cut_at + 1), 60, "sends through the majority")
                new_leader = cluster.leader("notifications", cluster_vhost, via=survivor)
                wait_for(lambda: len(cluster.status(via=survivor)["running_nodes"]) == 2, 30, "the cut seen")
                rejoined = wait_for(
                    lambda: sorted(cluster.status(via=survivor)["running_nodes"]) == names and time.time(),
                    PARTITION_S + 60, f"{cut.name} to rejoin",
                )  # fmt: skip
                wait_for(producer.finished, scaled(300), "the producer to finish")
                assert producer.completed(), producer.out.read_text()[-2000:]
                confirmed, errors = producer.confirmed(), producer.errors()
            expected = {f"steady {i}" for i in confirmed}
            wait_for(
                lambda: all_sent(sandbox, expected), scaled(240), "every confirmed message sent", poll_s=0.5
            )
            members = cluster.quorum_status("notifications", cluster_vhost, via=survivor)
            assert worker.proc.poll() is None and children(worker.proc.pid) == processes_before, "no restart"
    finally:
        cluster.terminate(cut)  # clears its allow list (see Cluster.partition); the fixture starts it
    result = message_report(
        f"cluster: node 1 (every client's) cut off from the others for {PARTITION_S:.0f} s "
        f"under {RATE} msg/s (pause_minority), then rejoined",
        sandbox, cluster, cluster_vhost, expected, cut_at,
        f"leader {leader} -> {new_leader}; rejoined {rejoined - cut_at:.0f} s after the cut, "
        f"{len([m for m in members if m['Raft State'] in ('leader', 'follower')])} of {len(members)} members "
        f"in the Raft group after; {len(errors)} publish attempts retried",
    )  # fmt: skip
    assert result.lost == 0
    assert len(confirmed) == count
    assert len(members) == 3
    assert result.recovery_s is not None and result.recovery_s < RECOVERY_TARGET_S, log.read_text()[-3000:]
