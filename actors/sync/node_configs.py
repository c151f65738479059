"""``sync_node_configs`` (every 30 min): each node's configuration cached in Redis for the dashboard.

Three panel calls per run — ``/api/nodes``, ``/api/config-profiles/inbounds``, ``/api/hosts`` (the
panel has no per-node config route: a node runs the inbounds of its config profile it has active) —
become one key per node, ``cybervpn:nodes:config:{node_uuid}``, JSON with a TTL of
SYNC_NODE_CONFIG_TTL_S (35 min: one run's values outlive the next run's start):

``node_uuid``, ``name``, ``address``, ``port``, ``country_code``, ``is_disabled``;
``config_profile_uuid`` (null for a node without a profile); ``inbounds`` — the node's active
inbounds (``uuid``, ``tag``, ``type``, ``network``, ``security``, ``port``, ``active_squads``; never
the raw Xray inbound, which carries the REALITY private key); ``hosts`` — the hosts on those
inbounds that are not pinned to other nodes (``uuid``, ``remark``, ``address``, ``port``, ``sni``,
``path``, ``security_layer``, ``is_disabled``, ``inbound_uuid``); ``synced_at``.

A node whose config does not parse (its ``configProfile`` is not the contract's shape, or it names an
inbound the panel's inbound list does not have — e.g. a profile edited between the two calls) is
logged and counted ``failed``: its key is left as it is, so the last good value serves until its TTL.
A panel call that fails fails the run (retried per the sync policy); every key keeps its value.
A node removed from the panel disappears when its key expires.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import dramatiq
import redis

from actors.sync import QUEUE
from actors.sync.metrics import job_done
from worker_app.clients.remnawave import Node
from worker_app.redis_client import key
from worker_app.runtime import get_runtime
from worker_app.timefmt import iso_ms

JOB = "sync_node_configs"
log = logging.getLogger(__name__)
_INBOUND_FIELDS = ("uuid", "tag", "type", "network", "security", "port")


class BadNodeConfig(ValueError):
    """A node's config does not fit the contract (its previous value is kept)."""


def config_key(node_uuid: str) -> str:
    return key("nodes", "config", node_uuid)


def node_config(
    node: Node,
    inbounds: Mapping[str, Mapping[str, Any]],
    hosts: Sequence[Mapping[str, Any]],
    *,
    synced_at: str,
) -> dict[str, Any]:
    """The cached config of ``node``; :class:`BadNodeConfig` when it cannot be built."""
    profile = node.raw.get("configProfile")
    active = profile.get("activeInbounds") if isinstance(profile, dict) else None
    if not isinstance(active, list) or not all(isinstance(i, dict) and i.get("uuid") for i in active):
        raise BadNodeConfig("configProfile.activeInbounds is not a list of inbounds")
    uuids = [str(i["uuid"]) for i in active]
    unknown = [u for u in uuids if u not in inbounds]
    if unknown:
        raise BadNodeConfig(f"active inbound(s) {', '.join(unknown)} not among the panel's inbounds")
    return {
        "node_uuid": node.uuid,
        "name": node.name,
        "address": node.raw.get("address"),
        "port": node.raw.get("port"),
        "country_code": node.country_code,
        "is_disabled": node.is_disabled,
        "config_profile_uuid": profile.get("activeConfigProfileUuid") if isinstance(profile, dict) else None,
        "inbounds": [_inbound(inbounds[u]) for u in uuids],
        "hosts": [_host(h) for h in hosts if _serves(h, node.uuid, set(uuids))],
        "synced_at": synced_at,
    }


def sync_configs(
    redis_client: redis.Redis,
    nodes: Sequence[Node],
    inbounds: Sequence[Any],
    hosts: Sequence[Any],
    *,
    now: datetime,
    ttl_s: int,
) -> dict[str, int]:
    """Write every node's config that builds; counts ``written`` and ``failed``."""
    by_uuid = {str(i["uuid"]): i for i in inbounds if isinstance(i, dict) and i.get("uuid")}
    good_hosts = [h for h in hosts if isinstance(h, dict)]
    synced_at = iso_ms(now)
    failed: list[str] = []
    with redis_client.pipeline(transaction=False) as pipe:
        for node in nodes:
            try:
                config = node_config(node, by_uuid, good_hosts, synced_at=synced_at)
            except BadNodeConfig as e:
                failed.append(f"{node.name} ({node.uuid}): {e}")
                continue
            pipe.set(config_key(node.uuid), json.dumps(config, separators=(",", ":")), ex=ttl_s)
        pipe.execute()
    if failed:
        log.warning("%s: %d node config(s) not updated, their previous values kept: %s",
                    JOB, len(failed), "; ".join(failed[:20]))  # fmt: skip
    return {"written": len(nodes) - len(failed), "failed": len(failed)}


def _inbound(inbound: Mapping[str, Any]) -> dict[str, Any]:
    view = {name: inbound.get(name) for name in _INBOUND_FIELDS}
    view["active_squads"] = list(inbound.get("activeSquads") or [])
    return view


def _serves(host: Mapping[str, Any], node_uuid: str, inbound_uuids: set[str]) -> bool:
    """A host belongs to a node when it is on one of the node's inbounds and, if the host is pinned
    to nodes, the node is one of them."""
    inbound = host.get("inbound")
    on = inbound.get("configProfileInboundUuid") if isinstance(inbound, dict) else None
    pinned = host.get("nodes") or []
    return on in inbound_uuids and (not pinned or node_uuid in pinned)


def _host(host: Mapping[str, Any]) -> dict[str, Any]:
    inbound = host.get("inbound") or {}
    return {
        "uuid": host.get("uuid"),
        "remark": host.get("remark"),
        "address": host.get("address"),
        "port": host.get("port"),
        "sni": host.get("sni"),
        "path": host.get("path"),
        "security_layer": host.get("securityLayer"),
        "is_disabled": bool(host.get("isDisabled")),
        "inbound_uuid": inbound.get("configProfileInboundUuid"),
    }


@dramatiq.actor(queue_name=QUEUE, store_results=True)
def sync_node_configs() -> dict[str, Any]:
    """Cache every node's profile, inbounds and hosts in ``cybervpn:nodes:config:{uuid}`` (every 30 min)."""
    runtime = get_runtime()
    started = time.monotonic()
    panel = runtime.remnawave
    nodes, inbounds, hosts = panel.nodes(), panel.inbounds(), panel.hosts()
    counts = sync_configs(runtime.redis, nodes, inbounds, hosts, now=datetime.now(UTC),
                          ttl_s=runtime.settings.sync_node_config_ttl_s)  # fmt: skip
    return job_done(JOB, counts, started, nodes=len(nodes))
