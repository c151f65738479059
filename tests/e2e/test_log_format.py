"""Tier 3: with LOG_FORMAT=json every line the worker's processes write is a JSON object — the
``dramatiq`` main process's own lines included — and no line carries terminal colour codes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.fixtures.ports import free_port
from tests.fixtures.worker import ROOT, WorkerProcess, stop, wait_for, wait_until_consuming

pytestmark = pytest.mark.rabbitmq

# What ``worker-app worker`` runs (it takes only -p/-t/-Q; this also loads the tests' actors' path).
RUN_DRAMATIQ = (
    "import sys; from worker_app.bootstrap import run_dramatiq; sys.exit(run_dramatiq(sys.argv[1:]))"
)
WORKER_APP = str(Path(sys.executable).parent / "worker-app")


@pytest.fixture
def services(no_leftover_messages: None, migrated_database: str) -> None:
    """The private vhost and the migrated database a worker boots on."""


@contextmanager
def worker(log_path: Path, env: dict[str, str]) -> Iterator[WorkerProcess]:
    """The worker (one process, two threads) as ``worker-app worker`` runs it, consuming every
    queue; stopped with SIGTERM to its main process on leaving."""
    args = [sys.executable, "-c", RUN_DRAMATIQ, "worker_app", "--path", str(ROOT), "-p", "1", "-t", "2"]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            args,
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    running = WorkerProcess(proc, log_path)
    try:
        wait_until_consuming(running, None)
        yield running
    finally:
        stop(proc)


def json_object(line: str) -> dict[str, Any] | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def record_with(running: WorkerProcess, text: str) -> dict[str, Any] | None:
    """The first JSON line of the worker's output whose ``msg`` contains ``text``."""
    records = (json_object(line) for line in running.log().splitlines())
    return next((r for r in records if r and text in r.get("msg", "")), None)


def test_every_worker_line_is_a_json_object_with_log_format_json(services: None, tmp_path: Path) -> None:
    # Given a worker whose metrics port is taken by another process (its exposition moves on)
    metrics_port = free_port()
    with socket.socket() as other:
        other.bind(("0.0.0.0", metrics_port))
        other.listen()
        env = {"LOG_FORMAT": "json", "METRICS_PORT": str(metrics_port), "METRICS_DIR": str(tmp_path / "prom")}

        # When it boots, serves a scrape and is stopped with SIGTERM
        with worker(tmp_path / "worker.log", env) as running:
            moved = wait_for(lambda: record_with(running, "instead"), 30, "the metrics port warning")
            used = int(moved["msg"].rsplit("port ", 1)[1].split()[0])
            assert requests.get(f"http://127.0.0.1:{used}/metrics", timeout=10).status_code == 200
        assert running.proc.returncode == 0

    # Then every line of its output is a JSON object, the main process's and the last ones included
    lines = [line for line in running.log().splitlines() if line.strip()]
    not_json = [line for line in lines if json_object(line) is None]
    assert not_json == [], "lines that are not JSON objects:\n" + "\n".join(not_json)
    records = [json_object(line) or {} for line in lines]
    messages = {(r["logger"], r["msg"].split(" '")[0]) for r in records}
    assert ("dramatiq.MainProcess", "Dramatiq") in messages  # "Dramatiq '2.x' is booting up."
    assert ("dramatiq.MainProcess", "Sending signal") in messages
    assert ("dramatiq.worker.Worker", "Worker has been shut down.") in messages
    # (other warnings may come from messages earlier tests left in the run's vhost)
    warnings = [r["msg"] for r in records if r["level"] == "WARNING" and "metrics port" in r["msg"]]
    assert warnings == [f"worker metrics port {metrics_port} is in use: serving on port {used} instead"]


def test_worker_lines_are_human_text_with_log_format_text(services: None, tmp_path: Path) -> None:
    # Given a worker with LOG_FORMAT=text, When it boots and is stopped
    with worker(tmp_path / "worker.log", {"LOG_FORMAT": "text", "METRICS_PORT": "0"}) as running:
        pass

    # Then no line is JSON, and the main process's lines are in our text format
    lines = [line for line in running.log().splitlines() if line.strip()]
    assert lines and not any(line.startswith("{") for line in lines)
    assert any(" INFO    dramatiq.MainProcess Dramatiq '" in line for line in lines)


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_api_access_lines_carry_no_terminal_colour_codes(
    services: None, tmp_path: Path, log_format: str
) -> None:
    # Given `worker-app serve` (werkzeug colours a 404's request line yellow)
    port = free_port()
    log_path = tmp_path / "api.log"
    with log_path.open("wb") as log:
        env = {**os.environ, "LOG_FORMAT": log_format}
        proc = subprocess.Popen(
            [WORKER_APP, "serve", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: _accepts(port) or proc.poll() is not None, 60, "the API to listen")
        assert proc.poll() is None, log_path.read_text()

        # When a request is answered 404
        path = f"/no-such-page-{uuid.uuid4().hex[:8]}"
        assert requests.get(f"http://127.0.0.1:{port}{path}", timeout=10).status_code == 404
        line = wait_for(
            lambda: next((x for x in log_path.read_text().splitlines() if path in x), None),
            10,
            "the access line",
        )
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)

    # Then its access line is plain text (inside a JSON object with LOG_FORMAT=json)
    assert "\x1b" not in line
    message = (json_object(line) or {}).get("msg", "") if log_format == "json" else line
    assert f'"GET {path} HTTP/1.1" 404' in message and "\x1b" not in message


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True
