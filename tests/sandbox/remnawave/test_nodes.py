"""The fake panel's node, system, bandwidth and config routes over HTTP: the node flags per state, node
actions and A011/A149, system stats, bandwidth (strings and numbers), health, metadata, inbounds and
hosts."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import pytest
import requests

from sandbox.remnawave.app import RunningRemnawave
from tests.fixtures.worker import wait_for
from tests.sandbox.remnawave.helpers import (
    NODE_FIELDS,
    add_nodes,
    admin,
    api,
    assert_error,
    assert_validation_failed,
    seed,
    seed_status,
)


def iso_ms(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000


@pytest.mark.parametrize(
    ("state", "flags"),
    [
        ("online", (True, False, False)),
        ("offline", (False, False, False)),
        ("connecting", (False, True, False)),
        ("disabled", (False, False, True)),
    ],
)
def test_node_states_show_as_the_three_flags(
    panel: RunningRemnawave, state: str, flags: tuple[bool, bool, bool]
) -> None:
    node_uuid = add_nodes(panel, "online")[0]
    admin(panel, f"nodes/{node_uuid}/state", {"state": state})

    listed = api(panel, "GET", "/api/nodes").json()["response"]
    single = api(panel, "GET", f"/api/nodes/{node_uuid}").json()["response"]

    assert listed == [single]
    assert set(single) == NODE_FIELDS
    assert (single["isConnected"], single["isConnecting"], single["isDisabled"]) == flags


def test_node_actions_answer_as_the_contract_says(panel: RunningRemnawave) -> None:
    node_uuid = add_nodes(panel, "online")[0]
    base = f"/api/nodes/{node_uuid}/actions"

    disabled = api(panel, "POST", f"{base}/disable")
    restart_disabled = api(panel, "POST", f"{base}/restart", json={"forceRestart": False})
    enabled = api(panel, "POST", f"{base}/enable")
    restart = api(panel, "POST", f"{base}/restart", json={"forceRestart": True})
    reset = api(panel, "POST", f"{base}/reset-traffic")

    assert (disabled.status_code, disabled.json()["response"]["isDisabled"]) == (200, True)
    assert_error(restart_disabled, 400, "A149", f"{base}/restart")
    assert (enabled.status_code, enabled.json()["response"]["isDisabled"]) == (200, False)
    assert (restart.status_code, restart.content, reset.status_code, reset.content) == (202, b"", 204, b"")


def test_an_unknown_node_is_a011(panel: RunningRemnawave) -> None:
    path = "/api/nodes/00000000-0000-4000-8000-000000000000"

    assert_error(api(panel, "GET", path), 404, "A011", path)


def test_restart_all_and_bulk_actions_answer_without_a_body(panel: RunningRemnawave) -> None:
    uuids = add_nodes(panel, "online", "online")

    restart_all = api(panel, "POST", "/api/nodes/actions/restart-all", json={"forceRestart": False})
    bulk = api(panel, "POST", "/api/nodes/bulk-actions", json={"uuids": uuids, "action": "DISABLE"})

    assert (restart_all.status_code, restart_all.content, bulk.status_code, bulk.content) == (
        202,
        b"",
        204,
        b"",
    )
    assert all(n["isDisabled"] for n in api(panel, "GET", "/api/nodes").json()["response"])


# --- system, bandwidth, config ---


def test_system_stats_count_every_status_and_online_users(panel: RunningRemnawave) -> None:
    for status in ("ACTIVE", "ACTIVE", "LIMITED"):
        seed_status(panel, status)
    add_nodes(panel, "online", "offline")

    stats = api(panel, "GET", "/api/system/stats").json()["response"]

    assert stats["users"] == {
        "statusCounts": {"ACTIVE": 2, "DISABLED": 0, "LIMITED": 1, "EXPIRED": 0},
        "totalUsers": 3,
    }
    assert set(stats["onlineStats"]) == {"onlineNow", "lastDay", "lastWeek", "neverOnline"}
    assert stats["nodes"]["totalOnline"] == 4
    assert stats["nodes"]["totalBytesLifetime"].isdigit()
    assert {"cpu", "memory", "uptime", "timestamp"} <= set(stats)


def test_bandwidth_summary_is_human_readable_strings(panel: RunningRemnawave) -> None:
    admin(panel, "nodes", {"count": 2})

    summary = api(panel, "GET", "/api/system/stats/bandwidth").json()["response"]

    assert len(summary) == 5
    assert all(re.fullmatch(r"\d+(\.\d\d)? [KMGTP]?i?B", v) for s in summary.values() for v in s.values())


def test_health_and_metadata_answer_and_the_version_is_settable(panel: RunningRemnawave) -> None:
    health = api(panel, "GET", "/api/system/health").json()
    default = api(panel, "GET", "/api/system/metadata").json()["response"]
    admin(panel, "faults", {"version": "2.8.1"})
    old = api(panel, "GET", "/api/system/metadata").json()["response"]

    assert isinstance(health["response"]["runtimeMetrics"], list) and health["response"]["runtimeMetrics"]
    assert (default["version"], old["version"]) == ("3.3.2", "2.8.1")
    assert set(default) == {"version", "build", "git"} and set(default["build"]) == {"time", "number"}


def test_bandwidth_stats_per_node_are_numbers_per_day(panel: RunningRemnawave) -> None:
    uuids = add_nodes(panel, "online", "online", "offline")
    admin(panel, f"nodes/{uuids[1]}/state", {"trafficUsedBytes": 10**12})
    params = {"start": "2025-01-01", "end": "2025-01-03", "topNodesLimit": 2}

    stats = api(panel, "GET", "/api/bandwidth-stats/nodes", params=params).json()["response"]

    assert stats["categories"] == ["2025-01-01", "2025-01-02", "2025-01-03"]
    assert len(stats["sparklineData"]) == 3 and len(stats["series"]) == 3
    assert [n["uuid"] for n in stats["topNodes"]][:1] == [uuids[1]] and len(stats["topNodes"]) == 2
    assert all(isinstance(v, int) for s in stats["series"] for v in s["data"])
    assert_validation_failed(api(panel, "GET", "/api/bandwidth-stats/nodes", params={"start": "yesterday"}))


def test_node_users_usage_lists_users_above_the_threshold(panel: RunningRemnawave) -> None:
    node_uuid = add_nodes(panel, "online")[0]
    seed(panel, {"usedTrafficBytes": 500}, {"usedTrafficBytes": 5000}, {})
    params = {"start": "2025-01-01", "end": "2025-01-31", "minTotalBytes": 1000}

    usage = api(
        panel, "POST", "/api/bandwidth-stats/nodes/usage", params=params, json={"nodesUuids": [node_uuid]}
    )

    assert usage.json() == {
        "response": {"nodes": [{"uuid": node_uuid, "users": [{"id": 2, "totalBytes": 5000}]}]}
    }


def test_inbounds_and_hosts_have_their_fields(panel: RunningRemnawave) -> None:
    inbounds = api(panel, "GET", "/api/config-profiles/inbounds").json()["response"]
    hosts = api(panel, "GET", "/api/hosts").json()["response"]

    assert inbounds["total"] == len(inbounds["inbounds"]) > 0
    fields = {
        "uuid",
        "profileUuid",
        "tag",
        "type",
        "network",
        "security",
        "port",
        "rawInbound",
        "activeSquads",
    }
    assert all(set(i) == fields for i in inbounds["inbounds"])
    assert hosts and all({"uuid", "remark", "address", "port", "inbound", "nodes"} <= set(h) for h in hosts)


def flags(panel: RunningRemnawave, node_uuid: str) -> tuple[bool, bool]:
    node = api(panel, "GET", f"/api/nodes/{node_uuid}").json()["response"]
    return node["isConnected"], node["isConnecting"]


def test_an_outage_on_a_timeline_takes_the_node_down_then_brings_it_back(panel: RunningRemnawave) -> None:
    node_uuid = add_nodes(panel, "online")[0]
    answer = admin(panel, f"nodes/{node_uuid}/timeline", {"outage": {"in_s": 0, "for_s": 0.6}})
    [(back_at, state)] = [(s["at_ms"], s["state"]) for s in answer["steps"]]
    assert state == "online"
    node = api(panel, "GET", f"/api/nodes/{node_uuid}").json()["response"]
    assert (node["isConnected"], node["isConnecting"]) == (False, False)
    wait_for(lambda: flags(panel, node_uuid) == (True, False), 10, "the node back online")
    came_back = api(panel, "GET", "/api/nodes").json()["response"][0]["lastStatusChange"]
    assert abs(iso_ms(came_back) - back_at) < 1000  # stamped at the step, not when it was seen


def test_a_flap_and_a_slow_connect_follow_their_steps(panel: RunningRemnawave) -> None:
    flapping, slow = add_nodes(panel, "online", "online")
    flap = admin(panel, f"nodes/{flapping}/timeline", {"flap": {"times": 3, "down_s": 30, "up_s": 30}})
    assert [s["state"] for s in flap["steps"]] == ["online", "offline", "online", "offline", "online"]
    assert flags(panel, flapping) == (False, False)  # the first fall is due at once
    admin(panel, f"nodes/{slow}/timeline", {"slow_connect": {"for_s": 0.5}})
    assert flags(panel, slow) == (False, True)
    wait_for(lambda: flags(panel, slow) == (True, False), 10, "the slow node connected")
    cleared = admin(panel, f"nodes/{flapping}/timeline", {"steps": []})
    assert cleared["steps"] == [] and flags(panel, flapping) == (False, False)


@pytest.mark.parametrize(
    "body",
    [{}, {"outage": {"for_s": -1}}, {"flap": {"times": 2}}, {"steps": [{"in_s": 1, "state": "melted"}]},
     {"outage": {"for_s": 1}, "flap": {}}, {"outage": 5}],
)  # fmt: skip
def test_a_bad_timeline_is_refused_naming_what_is_wrong(panel: RunningRemnawave, body: Any) -> None:
    node_uuid = add_nodes(panel, "online")[0]
    response = requests.post(f"{panel.url}/_sandbox/nodes/{node_uuid}/timeline", json=body, timeout=10)
    assert response.status_code == 400 and response.json()["error"]
    assert flags(panel, node_uuid) == (True, False)
