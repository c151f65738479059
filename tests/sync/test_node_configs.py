"""sync_node_configs: each sandbox node's profile, inbounds and hosts cached in real Redis with their
TTL; a node whose config cannot be read keeps its last good value."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
import redis

from actors.sync import sync_node_configs
from actors.sync.node_configs import config_key, node_config
from sandbox.remnawave.format import INBOUNDS, PROFILE_UUID
from tests.fixtures.remnawave import Panel
from worker_app.clients.remnawave import Node
from worker_app.runtime import Runtime

TAGS = [inbound[1] for inbound in INBOUNDS]


def add_nodes(panel: Panel, *codes: str) -> list[str]:
    specs = [{"name": f"{code}-{i}", "countryCode": code} for i, code in enumerate(codes)]
    return panel.add_nodes(*specs)


def cached(redis_client: redis.Redis, node_uuid: str) -> dict[str, Any]:
    raw = redis_client.get(config_key(node_uuid))
    assert raw is not None, f"no config cached for {node_uuid}"
    found: dict[str, Any] = json.loads(str(raw))
    return found


def test_every_node_config_is_cached_with_its_inbounds_hosts_and_ttl(
    panel: Panel, panel_runtime: Runtime, redis_client: redis.Redis
) -> None:
    # Given three nodes on the sandbox's profile (two inbounds, one host on each)
    uuids = add_nodes(panel, "DE", "NL", "FI")
    hosts = panel_runtime.remnawave.hosts()

    # When the sync runs
    report = sync_node_configs()

    # Then each node's key holds its config, for 35 minutes
    assert report["counts"] == {"written": 3, "failed": 0} and report["nodes"] == 3
    for uuid, code in zip(uuids, ("DE", "NL", "FI"), strict=True):
        config = cached(redis_client, uuid)
        assert (config["node_uuid"], config["country_code"], config["config_profile_uuid"]) == (
            uuid,
            code,
            PROFILE_UUID,
        )
        assert [i["tag"] for i in config["inbounds"]] == TAGS
        assert all(i["active_squads"] for i in config["inbounds"])
        assert [h["uuid"] for h in config["hosts"]] == [h["uuid"] for h in hosts]
        assert {h["inbound_uuid"] for h in config["hosts"]} == {i["uuid"] for i in config["inbounds"]}
        assert "rawInbound" not in json.dumps(config)  # the raw Xray inbound (REALITY keys) is never cached
        assert 2090 <= redis_client.ttl(config_key(uuid)) <= 2100


def test_a_node_whose_config_breaks_keeps_its_last_good_value_and_is_counted(
    panel: Panel, panel_runtime: Runtime, redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    # Given two nodes cached once, and a third whose config never could be read
    broken, healthy, never = add_nodes(panel, "DE", "NL", "FI")
    panel.admin("POST", f"nodes/{never}/state", {"brokenConfig": True})
    assert sync_node_configs()["counts"] == {"written": 2, "failed": 1}
    last_good = redis_client.get(config_key(broken))
    caplog.clear()

    # When one node's config becomes unreadable and the other moves country
    panel.admin("POST", f"nodes/{broken}/state", {"brokenConfig": True})
    panel.admin("POST", f"nodes/{healthy}/state", {"countryCode": "SE"})
    report = sync_node_configs()

    # Then the broken node keeps its last good value (until its TTL), the other is refreshed
    assert report["counts"] == {"written": 1, "failed": 2}
    assert redis_client.get(config_key(broken)) == last_good
    assert redis_client.ttl(config_key(broken)) > 0
    assert cached(redis_client, healthy)["country_code"] == "SE"
    assert redis_client.get(config_key(never)) is None
    [warning] = [
        r for r in caplog.records if r.levelno == logging.WARNING and "previous values kept" in r.getMessage()
    ]
    assert "DE-0" in warning.getMessage() and "FI-2" in warning.getMessage()

    # When it is readable again, the next run writes it
    panel.admin("POST", f"nodes/{broken}/state", {"brokenConfig": False})
    assert sync_node_configs()["counts"] == {"written": 2, "failed": 1}
    assert redis_client.get(config_key(broken)) != last_good


def node(uuid: str, active: Any) -> Node:
    profile = {"activeConfigProfileUuid": PROFILE_UUID if active else None, "activeInbounds": active}
    return Node(uuid, "n", "DE", True, False, False, 0, 0, raw={"configProfile": profile})


def host(uuid: str, inbound: str, nodes: list[str]) -> dict[str, Any]:
    return {"uuid": uuid, "inbound": {"configProfileInboundUuid": inbound}, "nodes": nodes}


def test_a_node_has_the_hosts_of_its_inbounds_that_are_not_pinned_elsewhere() -> None:
    inbounds = {"i1": {"uuid": "i1", "tag": "A"}, "i2": {"uuid": "i2", "tag": "B"}}
    hosts = [host("open", "i1", []), host("mine", "i1", ["n1"]), host("theirs", "i1", ["n2"]),
             host("other-inbound", "i2", [])]  # fmt: skip
    config = node_config(node("n1", [{"uuid": "i1"}]), inbounds, hosts, synced_at="now")
    assert [h["uuid"] for h in config["hosts"]] == ["open", "mine"]
    assert [i["tag"] for i in config["inbounds"]] == ["A"]
    # a node without a profile has an empty config, not a failure
    bare = node_config(node("n1", []), inbounds, hosts, synced_at="now")
    assert (bare["config_profile_uuid"], bare["inbounds"], bare["hosts"]) == (None, [], [])


@pytest.mark.parametrize("active", [None, "x", [{"tag": "no uuid"}], [{"uuid": "gone"}]])
def test_a_config_that_does_not_fit_is_refused(active: Any) -> None:
    from actors.sync.node_configs import BadNodeConfig

    with pytest.raises(BadNodeConfig):
        node_config(node("n1", active), {"i1": {"uuid": "i1"}}, [], synced_at="now")
