"""``check_server_health`` (every 2 min): every panel node's status, its changes, and alerts that
never spam (PRD 3.1). The rules of statuses and incidents are :mod:`actors.monitoring.node_state`.

Redis keys (all nodes by uuid):

* ``cybervpn:health:{uuid}:current`` — the node's state (JSON: uuid, name, status, since,
  checked_at, incident, incident_since, downs); a node gone from the panel keeps it 7 days;
* ``cybervpn:health:{uuid}:history`` — sorted set, one member per change (JSON: status, from, at),
  score = the time; entries older than HEALTH_HISTORY_DAYS are trimmed;
* ``cybervpn:health:nodes`` — set of the nodes seen, to notice one leaving the panel.

Every change is also published on ``cybervpn:events`` (JSON: type ``node_status``, node, name,
old, new, at) for the admin SPA. Alerts go to the admins (``error`` for offline and flapping, which
are also open alerts until resolved; ``check_anomalies`` escalates a node offline for
ANOMALY_NODE_OFFLINE_S to ``critical``; it runs after every health run):
``HEALTH_GROUP_MIN_NODES`` or more nodes going offline — or being resolved — in one run make one
grouped message. Redis unreachable: the run logs one warning, exports the gauge and sends nothing
(it cannot tell what changed); the next run after Redis returns records the current states.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import dramatiq
import redis

from actors.monitoring.node_state import (
    GONE,
    OFFLINE,
    STATUSES,
    Event,
    NodeState,
    Rules,
    gone,
    observe,
    status_of,
)
from worker_app.alerts import AdminAlerts
from worker_app.clients.remnawave import Node
from worker_app.events import new_event, publish
from worker_app.lazy import created_once
from worker_app.open_alerts import OpenAlert, OpenAlerts
from worker_app.policies import Severity
from worker_app.redis_client import key
from worker_app.runtime import get_runtime
from worker_app.timefmt import utc_stamp

QUEUE = "monitoring"
NODES_KEY = key("health", "nodes")
GONE_TTL_S = 7 * 86_400
log = logging.getLogger(__name__)


def current_key(uuid: str) -> str:
    return key("health", uuid, "current")


def history_key(uuid: str) -> str:
    return key("health", uuid, "history")


@dataclass(frozen=True)
class Options:
    rules: Rules = field(default_factory=Rules)
    group_min_nodes: int = 3
    history_days: int = 7


@dataclass
class HealthReport:
    """One run: nodes by status, and the events it found."""

    statuses: dict[str, int] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    redis_down: bool = False

    def summary(self) -> dict[str, Any]:
        kinds: dict[str, int] = {}
        for event in self.events:
            kinds[event.kind] = kinds.get(event.kind, 0) + 1
        return {"statuses": self.statuses, "events": kinds, "redis_down": self.redis_down}


def check_health(
    nodes: Sequence[Node], redis_client: redis.Redis, alerts: AdminAlerts, *, now: float, options: Options
) -> HealthReport:
    """Observe every node, store and publish what changed, and alert."""
    report = HealthReport()
    for status in map(status_of, nodes):
        report.statuses[status] = report.statuses.get(status, 0) + 1
    set_gauge(nodes)
    try:
        previous = stored_states(redis_client, [n.uuid for n in nodes])
    except redis.RedisError as e:
        log.warning("node health not recorded: Redis unavailable (%s); the next run records it", e)
        report.redis_down = True
        return report
    states: list[NodeState] = []
    for node in nodes:
        state, events = observe(previous.get(node.uuid), node.uuid, node.name, status_of(node),
                                now=now, rules=options.rules)  # fmt: skip
        states.append(state)
        report.events += events
    for uuid in previous.keys() - {n.uuid for n in nodes}:
        if previous[uuid].status != GONE:
            state, event = gone(previous[uuid], now)
            states.append(state)
            report.events.append(event)
    _store(redis_client, states, report.events, now, options.history_days)
    _alert(alerts, report.events, options.group_min_nodes)
    try:
        _record_open(OpenAlerts(redis_client), report.events, states, now)
    except redis.RedisError as e:  # the messages are out; only the listing of open alerts lags
        log.warning("open node alerts not recorded: Redis unavailable (%s)", e)
    return report


def stored_states(redis_client: redis.Redis, uuids: Sequence[str] = ()) -> dict[str, NodeState]:
    """The stored state of ``uuids`` and of every node seen before."""
    known = {str(u) for u in redis_client.smembers(NODES_KEY)} | set(uuids)
    ordered = sorted(known)
    raw: list[Any] = redis_client.mget([current_key(u) for u in ordered]) if ordered else []
    return {u: NodeState.from_json(json.loads(r)) for u, r in zip(ordered, raw, strict=True) if r}


def _store(
    redis_client: redis.Redis, states: list[NodeState], events: list[Event], now: float, days: int
) -> None:
    with redis_client.pipeline(transaction=False) as pipe:
        for state in states:
            pipe.set(
                current_key(state.uuid),
                json.dumps(state.as_json()),
                ex=GONE_TTL_S if state.status == GONE else None,
            )
            if state.status == GONE:
                pipe.srem(NODES_KEY, state.uuid)
            else:
                pipe.sadd(NODES_KEY, state.uuid)
            pipe.zremrangebyscore(history_key(state.uuid), 0, now - days * 86_400)
        for event in (e for e in events if e.kind == "changed"):
            change = {"status": event.state.status, "from": event.old_status, "at": now}
            pipe.zadd(history_key(event.state.uuid), {json.dumps(change): now})
        publish(pipe, [
            new_event("node_status", now, node=e.state.uuid, name=e.state.name, old=e.old_status,
                      new=e.state.status)
            for e in events if e.kind == "changed"
        ])  # fmt: skip
        pipe.execute()


def _alert(alerts: AdminAlerts, events: list[Event], group_min: int) -> None:
    for kind in ("offline", "resolved"):
        found = [e for e in events if e.kind == kind]
        if len(found) >= group_min:
            alerts.alert(f"monitoring.nodes_{kind}", _group_text(kind, found), severity=_severity(kind))
            continue
        for event in found:
            alerts.alert(f"monitoring.node_{kind}.{event.state.uuid}", _text(event), severity=_severity(kind))
    for event in (e for e in events if e.kind == "flapping"):
        alerts.alert(f"monitoring.node_flapping.{event.state.uuid}", _text(event), severity="error")


def _record_open(open_alerts: OpenAlerts, events: list[Event], states: list[NodeState], now: float) -> None:
    """Offline and flapping incidents as open alerts (``worker-app alerts``), confirmed by every run
    that finds them still open, closed when resolved or when the node leaves the panel."""
    open_alerts.touch([f"monitoring.node_{s.incident}.{s.uuid}" for s in states if s.incident], now)
    for event in events:
        node = event.state
        if event.kind in (OFFLINE, "flapping"):
            alert_key = f"monitoring.node_{event.kind}.{node.uuid}"
            since = node.incident_since or now
            open_alerts.open(OpenAlert(alert_key, _severity(event.kind), _text(event), since, now,
                                       "check_server_health"))  # fmt: skip
        elif event.kind == "resolved" or (event.kind == "changed" and node.status == GONE):
            open_alerts.close_all([f"monitoring.node_{k}.{node.uuid}" for k in (OFFLINE, "flapping")], now)


def _severity(kind: str) -> Severity:
    """A node down pages the admins at once (``error``); ``check_anomalies`` escalates one down for
    ANOMALY_NODE_OFFLINE_S to ``critical`` (the on-call too)."""
    return "info" if kind == "resolved" else "error"


def _text(event: Event) -> str:
    node = event.state
    if event.kind == "offline":
        return f"node {node.name} is OFFLINE since {utc_stamp(node.since)} UTC (uuid {node.uuid})"
    if event.kind == "flapping":
        return (f"node {node.name} is FLAPPING: offline {len(node.downs)} times in the flap window; "
                f"no more alerts for it until it is stable (uuid {node.uuid})")  # fmt: skip
    down = duration_text(event.downtime_s or 0)
    return f"node {node.name} is back ({node.status}) after {down} down (uuid {node.uuid})"


def _group_text(kind: str, events: list[Event]) -> str:
    names = ", ".join(e.state.name for e in events[:20]) + (
        f" and {len(events) - 20} more" if len(events) > 20 else ""
    )
    if kind == "offline":
        return f"{len(events)} nodes went OFFLINE at once: {names}"
    return f"{len(events)} nodes are back: {names}"


def duration_text(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min {secs} s"


def set_gauge(nodes: Sequence[Node]) -> None:
    """``cybervpn_server_health{node, status}``: 1 for each node's current status, 0 for the others."""
    gauge = _gauge()
    for node in nodes:
        current = status_of(node)
        for status in STATUSES:
            gauge.labels(node.name, status).set(1 if status == current else 0)


@created_once
def _gauge() -> Any:
    import prometheus_client as prom

    return prom.Gauge(
        "cybervpn_server_health", "1 for each node's current status (online, offline, warning, maintenance).",
        ("node", "status"), multiprocess_mode="mostrecent", registry=None,
    )  # fmt: skip


@dramatiq.actor(queue_name=QUEUE, store_results=True)
def check_server_health() -> dict[str, Any]:
    """Every panel node's status (every 2 min): changes stored and published, alerts for offline,
    flapping and resolved nodes (grouped when many), never for warning or maintenance."""
    runtime = get_runtime()
    s = runtime.settings
    options = Options(
        Rules(s.health_flap_downs, s.health_flap_window_s, s.health_resolve_after_s),
        s.health_group_min_nodes,
        s.health_history_days,
    )
    started = time.monotonic()
    report = check_health(
        runtime.remnawave.nodes(), runtime.redis, runtime.alerts, now=time.time(), options=options
    )
    summary = {
        "job": "check_server_health",
        **report.summary(),
        "duration_s": round(time.monotonic() - started, 3),
    }
    log.info("monitoring job done: check_server_health %s", summary["statuses"], extra=summary)
    from actors.monitoring.anomalies import judge_anomalies

    if not report.redis_down:  # without Redis nothing can be judged, and the run has said so once
        judge_anomalies(runtime)  # node_offline judged on the states just stored, like every rule
    return summary
