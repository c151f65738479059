"""The fake panel for its contract tests: one server per test module on a free loopback port, state
reset for every test (this ``panel`` fixture overrides the client tests' one of
``tests.fixtures.remnawave``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sandbox.remnawave.app import RunningRemnawave, start_remnawave_in_thread


@pytest.fixture(scope="module")
def panel_server() -> Iterator[RunningRemnawave]:
    """The fake panel on a free loopback port for this module."""
    running = start_remnawave_in_thread("127.0.0.1", 0)
    yield running
    running.stop()


@pytest.fixture
def panel(panel_server: RunningRemnawave) -> RunningRemnawave:
    """The module's panel with fresh state: no users, no nodes, default token, no faults, empty log."""
    panel_server.state.reset()
    return panel_server
