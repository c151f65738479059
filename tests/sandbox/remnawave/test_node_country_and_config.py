"""The fake panel's node additions for the sync domain: 200 nodes in 50 countries, a node's country
changed through the admin API, and the ``brokenConfig`` fault."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from sandbox.remnawave.app import RunningRemnawave
from sandbox.remnawave.format import INBOUNDS, PROFILE_UUID
from tests.sandbox.remnawave.helpers import NODE_FIELDS, add_nodes, admin, api


def listed(panel: RunningRemnawave) -> list[dict[str, Any]]:
    nodes: list[dict[str, Any]] = api(panel, "GET", "/api/nodes").json()["response"]
    return nodes


def test_two_hundred_nodes_in_fifty_countries_are_listed_with_their_codes(panel: RunningRemnawave) -> None:
    codes = [f"{chr(65 + i // 26)}{chr(65 + i % 26)}" for i in range(50)]  # AA, AB, ... BX
    specs = [{"name": f"node-{i}", "countryCode": codes[i % 50]} for i in range(200)]
    admin(panel, "nodes", {"nodes": specs})
    nodes = listed(panel)
    assert [n["countryCode"] for n in nodes] == [codes[i % 50] for i in range(200)]
    assert all(set(n) == NODE_FIELDS for n in nodes)


def test_a_nodes_country_code_can_be_changed(panel: RunningRemnawave) -> None:
    node_uuid = add_nodes(panel, "online")[0]
    changed = admin(panel, f"nodes/{node_uuid}/state", {"countryCode": "NL"})
    assert changed["countryCode"] == "NL"
    assert api(panel, "GET", f"/api/nodes/{node_uuid}").json()["response"]["countryCode"] == "NL"


def test_broken_config_serves_the_nodes_profile_out_of_contract_until_cleared(
    panel: RunningRemnawave,
) -> None:
    broken, fine = add_nodes(panel, "online", "online")
    admin(panel, f"nodes/{broken}/state", {"brokenConfig": True})
    profiles = {n["uuid"]: n["configProfile"] for n in listed(panel)}
    assert profiles[broken] == {"activeConfigProfileUuid": PROFILE_UUID, "activeInbounds": None}
    assert [i["tag"] for i in profiles[fine]["activeInbounds"]] == [i[1] for i in INBOUNDS]

    admin(panel, f"nodes/{broken}/state", {"brokenConfig": False})
    assert listed(panel)[0]["configProfile"] == profiles[fine]


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"brokenConfig": "yes"}, "brokenConfig takes true or false"),
        ({"countryCode": 49}, "countryCode must be"),
    ],
)
def test_bad_node_changes_are_refused_naming_the_field(
    panel: RunningRemnawave, body: Any, error: str
) -> None:
    node_uuid = add_nodes(panel, "online")[0]
    reply = requests.post(f"{panel.url}/_sandbox/nodes/{node_uuid}/state", json=body, timeout=10)
    assert reply.status_code == 400 and error in reply.json()["error"]
