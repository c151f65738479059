"""The panel's node, system, bandwidth and config routes (``/api/nodes...``, ``/api/system/...``,
``/api/bandwidth-stats/...``, ``/api/config-profiles/inbounds``, ``/api/hosts``).

Each answer is a function of ``(panel, call)``; :mod:`sandbox.remnawave.routes` maps paths to them.
"""

from __future__ import annotations

from typing import Any

from sandbox.remnawave import format as fmt
from sandbox.remnawave import stats
from sandbox.remnawave.format import DEFAULT_SQUAD, INBOUNDS, NODE_ACTIONS, Invalid, PanelError, RwReply
from sandbox.remnawave.panel import Call, Panel, coerce, ok
from sandbox.remnawave.records import NodeRecord, host_json, inbound_json, node_json

# --- nodes ---


def set_state(node: NodeRecord, state: str, now: int) -> None:
    """Move a node to ``state``, stamping ``lastStatusChange`` only when it changes."""
    if node.state != state:
        node.state, node.changed_ms = state, now


def advance_timelines(panel: Panel, now: int) -> None:
    """Apply every node timeline step that is due, in order: the node takes the step's state, stamped
    with the step's time (so ``lastStatusChange`` says when the fault began, not when it was seen)."""
    for uuid, steps in list(panel.timelines.items()):
        node = panel.nodes.get(uuid)
        while node is not None and steps and steps[0][0] <= now:
            at, state = steps.pop(0)
            set_state(node, state, at)
        if node is None or not steps:
            del panel.timelines[uuid]


def list_nodes(panel: Panel, call: Call) -> RwReply:
    """``GET /api/nodes``: every node in id order."""
    return ok([node_json(n, call.now) for n in panel.nodes_by_id()])


def get_node(panel: Panel, call: Call) -> RwReply:
    """``GET /api/nodes/{uuid}``: the node or A011."""
    return ok(node_json(_node(panel, call), call.now))


def enable_node(panel: Panel, call: Call) -> RwReply:
    """``POST .../actions/enable``: a disabled node comes back online; any other stays as it is."""
    node = _node(panel, call)
    set_state(node, "online" if node.state == "disabled" else node.state, call.now)
    return ok(node_json(node, call.now))


def disable_node(panel: Panel, call: Call) -> RwReply:
    """``POST .../actions/disable``: the node is disabled (no error if it already is)."""
    node = _node(panel, call)
    set_state(node, "disabled", call.now)
    return ok(node_json(node, call.now))


def restart_node(panel: Panel, call: Call) -> RwReply:
    """``POST .../actions/restart`` ``{"forceRestart": bool}``: 202 without a body; A149 if disabled."""
    node = _node(panel, call)
    _force_restart(call.body)
    if node.state == "disabled":
        raise PanelError("A149")
    return RwReply(202, None)


def reset_node_traffic(panel: Panel, call: Call) -> RwReply:
    """``POST .../actions/reset-traffic``: ``trafficUsedBytes`` back to 0; 204 without a body."""
    _node(panel, call).traffic_used_bytes = 0
    return RwReply(204, None)


def restart_all_nodes(panel: Panel, call: Call) -> RwReply:
    """``POST /api/nodes/actions/restart-all`` ``{"forceRestart": bool}``: 202 without a body."""
    _force_restart(call.body)
    return RwReply(202, None)


def node_bulk_actions(panel: Panel, call: Call) -> RwReply:
    """``POST /api/nodes/bulk-actions`` ``{"uuids", "action"}``: 204; unknown uuids are ignored and
    RESTART changes nothing."""
    body = fmt.expect_object(call.body)
    uuids = fmt.uuid_list(body, "uuids")
    action = fmt.choice(body.get("action"), ["action"], NODE_ACTIONS)
    for node in (panel.nodes[u] for u in uuids if u in panel.nodes):
        if action == "ENABLE" and node.state == "disabled":
            set_state(node, "online", call.now)
        elif action == "DISABLE":
            set_state(node, "disabled", call.now)
        elif action == "RESET_TRAFFIC":
            node.traffic_used_bytes = 0
    return RwReply(204, None)


def _node(panel: Panel, call: Call) -> NodeRecord:
    node = panel.nodes.get(fmt.uuid_text(call.params["uuid"], ["uuid"]))
    if node is None:
        raise PanelError("A011")
    return node


def _force_restart(body: Any) -> None:
    if not isinstance(fmt.expect_object(body).get("forceRestart"), bool):
        raise Invalid(["forceRestart"], "invalid_type", "Invalid input: expected boolean", expected="boolean")


# --- system, bandwidth, config ---


def system_stats(panel: Panel, call: Call) -> RwReply:
    """``GET /api/system/stats``."""
    users, nodes = panel.users.records.values(), list(panel.nodes.values())
    return ok(stats.system_stats(panel.users.counts, users, nodes, panel.started_ms, call.now))


def bandwidth_summary(panel: Panel, call: Call) -> RwReply:
    """``GET /api/system/stats/bandwidth``: derived from the nodes' total traffic."""
    return ok(stats.bandwidth_summary(sum(n.traffic_used_bytes for n in panel.nodes.values())))


def health(panel: Panel, call: Call) -> RwReply:
    """``GET /api/system/health``."""
    return ok({"runtimeMetrics": [stats.runtime_metrics(panel.started_ms, call.now)]})


def metadata(panel: Panel, call: Call) -> RwReply:
    """``GET /api/system/metadata``: the version set by the ``version`` fault (3.3.2 by default)."""
    return ok(stats.metadata(panel.version, panel.started_ms))


def node_bandwidth(panel: Panel, call: Call) -> RwReply:
    """``GET /api/bandwidth-stats/nodes?start=&end=&topNodesLimit=``: per node and day."""
    days = stats.days_between(call.query.get("start"), call.query.get("end"))
    limit = fmt.integer(coerce(call.query, "topNodesLimit", 20), ["topNodesLimit"], lo=1)
    return ok(stats.node_bandwidth(panel.nodes_by_id(), days, limit))


def node_users_usage(panel: Panel, call: Call) -> RwReply:
    """``POST /api/bandwidth-stats/nodes/usage?start=&end=&minTotalBytes=`` ``{"nodesUuids"}``: the
    users with traffic on each wanted node (user ``id`` is on node number ``(id - 1) % nodes``)."""
    stats.days_between(call.query.get("start"), call.query.get("end"))
    minimum = fmt.number(coerce(call.query, "minTotalBytes", 0), ["minTotalBytes"], lo=0)
    wanted = fmt.uuid_list(fmt.expect_object(call.body), "nodesUuids")
    order = [n.uuid for n in panel.nodes_by_id()]
    per_node: dict[str, list[dict[str, int]]] = {uuid: [] for uuid in wanted}
    for u in panel.users.records.values():
        node_uuid = order[(u.id - 1) % len(order)] if order else None
        if node_uuid in per_node and u.used_bytes > 0 and u.used_bytes >= minimum:
            per_node[node_uuid].append({"id": u.id, "totalBytes": u.used_bytes})
    return ok({"nodes": [{"uuid": uuid, "users": users} for uuid, users in per_node.items()]})


def inbounds(panel: Panel, call: Call) -> RwReply:
    """``GET /api/config-profiles/inbounds``: the two fixed inbounds."""
    found = [{**inbound_json(i), "activeSquads": [DEFAULT_SQUAD["uuid"]]} for i in INBOUNDS]
    return ok({"total": len(found), "inbounds": found})


def hosts(panel: Panel, call: Call) -> RwReply:
    """``GET /api/hosts``: one host per inbound, on every node."""
    node_uuids = [n.uuid for n in panel.nodes_by_id()]
    return ok([host_json(i, inbound, node_uuids) for i, inbound in enumerate(INBOUNDS)])
