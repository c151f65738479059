"""A node's health over time, as plain data: its status, its open incident and what a new
observation changes (no Redis, no panel: :func:`observe` is a pure function, tested on its own).

Statuses, from the panel's node flags: ``maintenance`` (``isDisabled``), ``warning``
(``isConnecting``), ``online`` (``isConnected``), else ``offline``; ``gone`` when the node has left
the panel. Only ``offline`` pages.

An *incident* opens when a node goes offline (one alert) and is *resolved* (one message, with the
downtime) once the node has been online or in maintenance for ``resolve_after_s``. A node going
offline ``flap_downs`` times within ``flap_window_s`` is *flapping*: one alert says so, and nothing
more is sent until it has been stable for the whole window, then one resolved message. So ten flaps
in ten minutes are two messages: the first offline alert and the flapping alert.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from worker_app.clients.remnawave import Node

ONLINE, OFFLINE, WARNING, MAINTENANCE, GONE = "online", "offline", "warning", "maintenance", "gone"
STATUSES = (ONLINE, OFFLINE, WARNING, MAINTENANCE, GONE)
_SETTLED = frozenset({ONLINE, MAINTENANCE})
"""Statuses that end an incident once they last ``resolve_after_s``."""


def status_of(node: Node) -> str:
    """The node's status from its panel flags."""
    if node.is_disabled:
        return MAINTENANCE
    if node.is_connecting:
        return WARNING
    return ONLINE if node.is_connected else OFFLINE


@dataclass(frozen=True)
class Rules:
    """HEALTH_* settings."""

    flap_downs: int = 2
    flap_window_s: float = 600.0
    resolve_after_s: float = 60.0


@dataclass(frozen=True)
class NodeState:
    """What is kept per node (``cybervpn:health:{uuid}:current``); times are unix seconds."""

    uuid: str
    name: str
    status: str
    since: float
    """When ``status`` began."""
    checked_at: float
    incident: str | None = None
    """``offline`` or ``flapping`` while one is open."""
    incident_since: float | None = None
    downs: tuple[float, ...] = field(default=())
    """When the node went offline, within the flap window."""

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "downs": list(self.downs)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NodeState:
        return cls(**{**data, "downs": tuple(data.get("downs") or ())})


@dataclass(frozen=True)
class Event:
    """Something a health run found: ``kind`` is ``changed`` (any status change), ``offline``,
    ``flapping`` or ``resolved`` (the last three are alerts); ``downtime_s`` for ``resolved``."""

    kind: str
    state: NodeState
    old_status: str | None = None
    downtime_s: float | None = None


def observe(
    prev: NodeState | None, uuid: str, name: str, status: str, *, now: float, rules: Rules
) -> tuple[NodeState, list[Event]]:
    """The node's new state after seeing ``status`` at ``now``, and what that means."""
    if prev is None:
        state = NodeState(uuid, name, status, now, now)
        return _opened(state, rules) if status == OFFLINE else (state, [])
    state = replace(prev, name=name, checked_at=now)
    events: list[Event] = []
    if status != prev.status:
        state = replace(state, status=status, since=now)
        events.append(Event("changed", state, prev.status))
        if status == OFFLINE:
            state, alerts = _opened(state, rules)
            events += alerts
    resolved = _resolved(state, now, rules)
    if resolved is not None:
        state, event = resolved
        events.append(event)
    return state, events


def gone(prev: NodeState, now: float) -> tuple[NodeState, Event]:
    """The node left the panel: marked gone, its incident closed without a message."""
    state = replace(prev, status=GONE, since=now, checked_at=now, incident=None, incident_since=None)
    return state, Event("changed", state, prev.status)


def _opened(state: NodeState, rules: Rules) -> tuple[NodeState, list[Event]]:
    now = state.since
    downs = (*(t for t in state.downs if now - t < rules.flap_window_s), now)
    state = replace(state, downs=downs)
    if len(downs) >= rules.flap_downs and state.incident != "flapping":
        state = replace(state, incident="flapping", incident_since=state.incident_since or now)
        return state, [Event("flapping", state)]
    if state.incident is None:
        state = replace(state, incident=OFFLINE, incident_since=now)
        return state, [Event(OFFLINE, state)]
    return state, []


def _resolved(state: NodeState, now: float, rules: Rules) -> tuple[NodeState, Event] | None:
    """The incident's end, when the node has been settled long enough (a flapping one: for the
    whole flap window since its last fall)."""
    if state.incident is None or state.status not in _SETTLED:
        return None
    quiet_s = rules.flap_window_s if state.incident == "flapping" else rules.resolve_after_s
    last_down = max(state.downs, default=state.incident_since or now)
    if now - state.since < rules.resolve_after_s or now - last_down < quiet_s:
        return None
    downtime_s = state.since - (state.incident_since or state.since)
    closed = replace(state, incident=None, incident_since=None, downs=())
    return closed, Event("resolved", closed, downtime_s=downtime_s)
