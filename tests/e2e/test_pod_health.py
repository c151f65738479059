"""Tier 3: the pod-local probes of a real worker, scheduler and ``worker-app serve``, with RabbitMQ
stopped: each answers from its own state — alive stays 200, ready turns 503 naming RabbitMQ — fast,
and ready again once RabbitMQ is back. (Also the unit checks of :mod:`worker_app.health`.)"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.fixtures.api import serving
from tests.fixtures.chaos import rabbitmq_stopped
from tests.fixtures.ports import free_port
from tests.fixtures.scheduler import start_scheduler
from tests.fixtures.worker import wait_for, worker_group
from worker_app.health import STALE_S, Health, fleet_answer, write_snapshot

PROBE_BUDGET_S = 0.05  # the bound for one probe (the median of many, so one slow scheduling
# of the test's own thread on a busy machine cannot fail it)


def probe(url: str) -> tuple[int, dict[str, Any], float]:
    started = time.perf_counter()
    reply = requests.get(url, timeout=5)
    return reply.status_code, reply.json(), time.perf_counter() - started


def status(url: str) -> int:
    """The probe's status; 0 while nothing listens yet (a process still starting)."""
    try:
        return requests.get(url, timeout=5).status_code
    except requests.ConnectionError:
        return 0


@pytest.fixture
def processes(tmp_path: Path, scheduler_tables: str, clean_tables: Any) -> Iterator[dict[str, str]]:
    worker_port, scheduler_port = free_port(), free_port()
    with ExitStack() as stack:
        stack.enter_context(worker_group(tmp_path / "worker.log", {"METRICS_PORT": str(worker_port)},
                                         ("monitoring",), processes=1, threads=2))  # fmt: skip
        scheduler = start_scheduler(
            tmp_path / "scheduler.log", {"SCHEDULER_METRICS_PORT": str(scheduler_port)}
        )
        stack.callback(scheduler.stop)
        serve = stack.enter_context(serving(tmp_path / "serve.log", {}))
        yield {
            "worker": f"http://127.0.0.1:{worker_port}",
            "scheduler": f"http://127.0.0.1:{scheduler_port}",
            "serve": serve,
        }


@pytest.mark.exclusive  # stops RabbitMQ
def test_probes_answer_from_local_state_fast_while_rabbitmq_is_stopped(processes: dict[str, str]) -> None:
    # Given a worker, a scheduler (the leader) and serve, all ready
    for name, base in processes.items():
        wait_for(lambda b=base: status(f"{b}/readyz") == 200, 60, f"the {name} to be ready")

    latencies: dict[str, list[float]] = {name: [] for name in processes}
    with rabbitmq_stopped():
        # When RabbitMQ is stopped, each one notices on its own: not ready, naming RabbitMQ
        for name, base in processes.items():
            wait_for(lambda b=base: status(f"{b}/readyz") == 503, 60, f"the {name} to turn not ready")
            _, body, _ = probe(f"{base}/readyz")
            failing = {k: v for k, v in body["checks"].items() if v != "ok"}
            # (the scheduler's publisher may also be stuck in a connect to the dead broker: not ready)
            assert failing and all("rabbitmq" in k or k == "publisher" for k in failing), (name, body)
        # Then every probe still answers at once: alive 200, ready 503
        for _ in range(20):
            for name, base in processes.items():
                alive, _, took_alive = probe(f"{base}/healthz")
                ready, _, took_ready = probe(f"{base}/readyz")
                assert (alive, ready) == (200, 503), name
                latencies[name] += [took_alive, took_ready]
    for name, taken in latencies.items():
        median, worst = statistics.median(taken), max(taken)
        print(
            f"\n[pod health] {name}: median {median * 1000:.1f} ms, max {worst * 1000:.1f} ms, RabbitMQ down"
        )
        assert median < PROBE_BUDGET_S, (name, taken)

    # And ready again once RabbitMQ is back
    for name, base in processes.items():
        wait_for(lambda b=base: status(f"{b}/readyz") == 200, 90, f"the {name} to be ready again")


def test_a_process_is_alive_while_its_loops_beat_and_ready_while_its_dependencies_report_ok() -> None:
    now = [1000.0]
    health = Health(clock=lambda: now[0])
    health.beat("loop")
    health.report("postgresql", None)
    assert health.liveness() == {"loop": "ok"} and health.readiness() == {"loop": "ok", "postgresql": "ok"}
    health.report("rabbitmq", "ConnectionError: refused")
    assert health.readiness()["rabbitmq"] == "ConnectionError: refused"
    now[0] += STALE_S
    assert health.liveness() == {"loop": "no progress for 30 s"}
    assert health.readiness()["postgresql"] == "not checked for 30 s"
    health.beat("loop")
    health.stopping = True
    assert health.readiness()["process"] == "shutting down"


def test_the_metrics_process_answers_for_every_worker_process_from_their_files(tmp_path: Path) -> None:
    directory = tmp_path / "health"
    assert fleet_answer(directory, "/healthz") == (200, b'{"status":"ok","checks":{}}')
    status, body = fleet_answer(directory, "/readyz") or (0, b"")
    assert status == 503 and b"no worker process is up yet" in body
    health = Health()
    health.beat("threads")
    health.report("rabbitmq", None)
    write_snapshot(directory, health, os.getpid())
    assert fleet_answer(directory, "/readyz") == (200, json.dumps({"status": "ok", "checks": {
        f"worker {os.getpid()} threads": "ok", f"worker {os.getpid()} rabbitmq": "ok"}},
        separators=(",", ":")).encode())  # fmt: skip
    # a file not rewritten for STALE_S is a hung process; one of a process that is gone is removed
    status, body = fleet_answer(directory, "/healthz", now=time.time() + STALE_S + 1) or (0, b"")
    assert status == 503 and b"hung" in body
    (directory / "999999999.json").write_text("{}")
    assert fleet_answer(directory, "/healthz")[0] == 200  # type: ignore[index]
    assert not (directory / "999999999.json").exists()
    assert fleet_answer(directory, "/metrics") is None
