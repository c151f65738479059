"""The fake panel for its contract tests: the session's panel server (``tests.fixtures.remnawave``),
state reset for every test (this ``panel`` fixture overrides the client tests' one, which drives
the panel over its admin API instead)."""

from __future__ import annotations

import pytest

from sandbox.remnawave.app import RunningRemnawave


@pytest.fixture
def panel(remnawave_server: RunningRemnawave) -> RunningRemnawave:
    """The panel with fresh state: no users, no nodes, default token, no faults, empty log."""
    remnawave_server.state.reset()
    return remnawave_server
