"""A metrics port in use: one warning and the next free port, or none — never a crash (a second
``dramatiq worker_app`` or scheduler on the same host)."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import pytest
import requests

from scheduler.metrics import SchedulerMetrics
from tests.fixtures.ports import free_port
from worker_app.middleware.metrics import PORTS_TRIED, metrics_server


@contextmanager
def listening_on(*ports: int) -> Iterator[None]:
    """Something else listening on each of ``ports`` (a port already taken stays taken)."""
    with ExitStack() as stack:
        for port in ports:
            sock = stack.enter_context(socket.socket())
            try:
                sock.bind(("0.0.0.0", port))
            except OSError:
                continue
            sock.listen()
        yield


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_worker_metrics_port_in_use_serves_on_the_next_free_port_after_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given another process listening on the worker's metrics port
    port = free_port()
    with listening_on(port):
        # When the exposition server starts on it
        server = metrics_server(port)

    # Then it listens on a later port, and one warning names both
    assert server is not None
    try:
        used = server.server_address[1]
        assert port < used < port + PORTS_TRIED
        socket.create_connection(("127.0.0.1", used), timeout=5).close()
        assert warnings_of(caplog) == [
            f"worker metrics port {port} is in use: serving on port {used} instead"
        ]
    finally:
        server.server_close()


def test_worker_metrics_with_every_port_in_use_are_not_served_after_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given the metrics port and the ten after it all in use
    port = free_port()
    with listening_on(*range(port, port + PORTS_TRIED)):
        # When the exposition server starts
        server = metrics_server(port)

    # Then there is none, without an exception, and one warning says why
    assert server is None
    last = port + PORTS_TRIED - 1
    assert warnings_of(caplog) == [f"worker metrics not served: ports {port}-{last} are all in use"]


def test_scheduler_metrics_port_in_use_serves_on_the_next_free_port_after_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given another process listening on the scheduler's metrics port
    port = free_port()
    metrics = SchedulerMetrics()
    with listening_on(port):
        # When the scheduler serves its metrics
        used = metrics.serve(port)

    # Then they are served on a later port, and one warning names both
    assert used is not None and metrics.server is not None
    try:
        assert port < used < port + PORTS_TRIED
        body = requests.get(f"http://127.0.0.1:{used}/metrics", timeout=5).text
        assert "cybervpn_scheduler_leader" in body
        assert warnings_of(caplog) == [
            f"scheduler metrics port {port} is in use: serving on port {used} instead"
        ]
    finally:
        metrics.server.shutdown()
        metrics.server.server_close()
