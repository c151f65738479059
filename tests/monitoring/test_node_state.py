"""The node-health rules as plain data: statuses, incidents, flapping, resolution."""

from __future__ import annotations

from typing import Any

import pytest

from actors.monitoring.node_state import (
    MAINTENANCE,
    OFFLINE,
    ONLINE,
    WARNING,
    NodeState,
    Rules,
    observe,
    status_of,
)
from worker_app.clients.remnawave import Node

RULES = Rules(flap_downs=2, flap_window_s=600, resolve_after_s=60)


def node(**flags: bool) -> Node:
    values = {"is_connected": True, "is_connecting": False, "is_disabled": False, **flags}
    return Node("u1", "de-1", "DE", traffic_used_bytes=0, users_online=0, raw={}, **values)


@pytest.mark.parametrize(
    ("flags", "status"),
    [
        ({}, ONLINE),
        ({"is_connected": False}, OFFLINE),
        ({"is_connected": False, "is_connecting": True}, WARNING),
        ({"is_disabled": True, "is_connected": False}, MAINTENANCE),
    ],
)
def test_a_node_status_comes_from_its_panel_flags(flags: dict[str, bool], status: str) -> None:
    assert status_of(node(**flags)) == status


def run(observations: list[tuple[float, str]], prev: NodeState | None = None) -> tuple[NodeState, list[Any]]:
    """Observe ``(time, status)`` in order; the final state and every alert event (not ``changed``)."""
    alerts: list[Any] = []
    state = prev
    for now, status in observations:
        state, events = observe(state, "u1", "de-1", status, now=now, rules=RULES)
        alerts += [(e.kind, now, e.downtime_s) for e in events if e.kind != "changed"]
    assert state is not None
    return state, alerts


def test_going_offline_alerts_once_and_coming_back_resolves_once_with_the_downtime() -> None:
    state, alerts = run(
        [(0, ONLINE), (120, OFFLINE), (240, OFFLINE), (360, ONLINE), (480, ONLINE), (600, ONLINE)]
    )
    assert alerts == [("offline", 120, None), ("resolved", 480, 240)]
    assert state.incident is None


def test_a_node_back_only_briefly_is_not_resolved_yet() -> None:
    _, alerts = run([(0, ONLINE), (120, OFFLINE), (240, ONLINE)])
    assert alerts == [("offline", 120, None)]  # up for 0 s < 60 s: no message yet


def test_ten_flaps_in_ten_minutes_make_two_messages_and_one_resolution_once_stable() -> None:
    flaps = [(float(t), OFFLINE if i % 2 == 0 else ONLINE) for i, t in enumerate(range(30, 630, 30))]
    state, alerts = run([(0, ONLINE), *flaps])
    assert [kind for kind, _, _ in alerts] == ["offline", "flapping"]
    assert state.incident == "flapping"
    # stable for the whole flap window after its last fall: one resolved message
    last_down = max(state.downs)
    _, later = run([(last_down + 300, ONLINE), (last_down + 601, ONLINE), (last_down + 900, ONLINE)], state)
    assert [kind for kind, _, _ in later] == ["resolved"]


def test_warning_and_maintenance_never_page() -> None:
    _, alerts = run([(0, ONLINE), (120, WARNING), (240, MAINTENANCE), (360, WARNING), (480, ONLINE)])
    assert alerts == []


def test_a_node_first_seen_offline_alerts() -> None:
    _, alerts = run([(0, OFFLINE)])
    assert alerts == [("offline", 0, None)]


def test_the_state_survives_json() -> None:
    state, _ = run([(0, ONLINE), (120, OFFLINE), (150, ONLINE), (160, OFFLINE)])
    assert NodeState.from_json(state.as_json()) == state
