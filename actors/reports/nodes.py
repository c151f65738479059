"""Node health over a report's period, from what ``check_server_health`` stores
(:mod:`actors.monitoring.health`): each node's current state and its history of status changes
(``{"status", "from", "at"}``, trimmed to ``HEALTH_HISTORY_DAYS``).

A node's status at any moment is the ``from`` of its first change after it (or its current status
when nothing changed since); before its first kept change it is taken to have held that change's
``from`` status since the history's horizon. So only the part of the period inside the kept history
is *known*: :attr:`NodeHealth.known_s` says how much, and uptime is measured on it. *Uptime* is the
time not ``offline`` (``warning`` — connecting — and ``maintenance`` — disabled on purpose — count
as up); time ``gone`` (removed from the panel) is not known.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import redis

from actors.monitoring.health import history_key, stored_states
from actors.monitoring.node_state import GONE, OFFLINE
from worker_app.redis_client import key

log = logging.getLogger(__name__)
_HISTORY_PATTERN = key("health", "*", "history")


@dataclass(frozen=True)
class Change:
    at: float
    old: str
    new: str


@dataclass(frozen=True)
class NodeHealth:
    """One node over ``[start, end)``: seconds offline and known, and its changes in the period."""

    uuid: str
    name: str
    offline_s: float
    known_s: float
    inside: tuple[Change, ...]
    """The status changes within the period, oldest first."""

    @property
    def downs(self) -> int:
        return sum(1 for c in self.inside if c.new == OFFLINE)

    @property
    def changes(self) -> int:
        return len(self.inside)

    @property
    def uptime_pct(self) -> float | None:
        return (self.known_s - self.offline_s) / self.known_s * 100 if self.known_s > 0 else None

    @property
    def troubled(self) -> bool:
        return self.offline_s > 0 or self.changes > 0


@dataclass(frozen=True)
class Period:
    """The health of every node known over ``[start, end)``; ``horizon`` is where the kept history
    begins (times before it are unknown)."""

    start: float
    end: float
    horizon: float
    nodes: tuple[NodeHealth, ...]

    @property
    def known_from(self) -> float:
        return max(self.start, self.horizon)

    @property
    def covered(self) -> bool:
        """The whole period lies inside the kept history."""
        return self.horizon <= self.start

    def most_troubled(self) -> list[NodeHealth]:
        """The nodes with offline time or status changes, the longest offline first."""
        troubled = [n for n in self.nodes if n.troubled]
        return sorted(troubled, key=lambda n: (-n.offline_s, -n.downs, -n.changes, n.name))


def node_health(client: redis.Redis, start: float, end: float, *, now: float, history_days: int) -> Period:
    """Every node's health over ``[start, end)`` from the stored health keys (a few round trips)."""
    horizon = now - history_days * 86_400
    with_history = _nodes_with_history(client)
    states = stored_states(client, sorted(with_history))  # and every node in the health set
    uuids = sorted(set(states) | with_history)
    with client.pipeline(transaction=False) as pipe:
        for uuid in uuids:
            pipe.zrangebyscore(history_key(uuid), "-inf", "+inf", withscores=True)
        histories: list[Any] = pipe.execute()
    nodes = []
    for uuid, history in zip(uuids, histories, strict=True):
        state = states.get(uuid)
        changes = _changes(uuid, history)
        current = (state.status, state.since) if state is not None else None
        if not changes and current is None:
            continue
        name = state.name if state is not None else uuid[:8]
        nodes.append(
            _health(uuid, name, changes, current, known_from=max(start, horizon), start=start, end=end)
        )
    return Period(start, end, horizon, tuple(nodes))


def _nodes_with_history(client: redis.Redis) -> set[str]:
    """The nodes with a history left (a node gone from the panel has one too)."""
    known: set[str] = set()
    for name in client.scan_iter(match=_HISTORY_PATTERN, count=1000):
        parts = str(name).split(":")
        if len(parts) == 4 and parts[2] != "services":
            known.add(parts[2])
    return known


def _changes(uuid: str, history: Iterable[tuple[str, float]]) -> list[Change]:
    changes = []
    for member, score in history:
        try:
            entry = json.loads(member)
            changes.append(Change(float(score), str(entry["from"]), str(entry["status"])))
        except (ValueError, KeyError, TypeError):
            log.warning("report: node %s has a malformed health history entry %r, skipped", uuid, member)
    return sorted(changes, key=lambda c: c.at)


def _health(
    uuid: str, name: str, changes: list[Change], current: tuple[str, float] | None, *,
    known_from: float, start: float, end: float,
) -> NodeHealth:  # fmt: skip
    """Offline and known seconds of ``[known_from, end)``, and the changes in ``[start, end)``."""
    segments: list[tuple[float, str]]
    if changes:
        segments = [(float("-inf"), changes[0].old)] + [(c.at, c.new) for c in changes]
    else:  # nothing changed in the kept history: its status since the state says it began
        assert current is not None
        segments = [(current[1], current[0])]
    offline = known = 0.0
    bounds = [s for s, _ in segments[1:]] + [float("inf")]
    for (began, status), ended in zip(segments, bounds, strict=True):
        overlap = max(0.0, min(ended, end) - max(began, known_from))
        if status != GONE:
            known += overlap
        if status == OFFLINE:
            offline += overlap
    inside = tuple(c for c in changes if start <= c.at < end)
    return NodeHealth(uuid, name, offline, known, inside)
