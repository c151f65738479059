"""check_server_health against the sandbox panel, real Redis, alerts to the sandbox Telegram."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import redis

from actors.monitoring import check_server_health
from actors.monitoring.health import Options, check_health, current_key, history_key
from actors.monitoring.node_state import Rules
from sandbox.server import RunningSandbox
from tests.fixtures.notifications import admin_messages, unreachable_redis_url
from tests.fixtures.remnawave import Panel
from worker_app.events import EVENTS_CHANNEL
from worker_app.open_alerts import OpenAlerts
from worker_app.runtime import Runtime


def add_nodes(panel: Panel, count: int, state: str = "online") -> list[str]:
    return panel.add_nodes(
        *({"name": f"node-{i}", "countryCode": "DE", "state": state} for i in range(count))
    )


def set_state(panel: Panel, uuid: str, state: str) -> None:
    panel.admin("POST", f"nodes/{uuid}/state", {"state": state})


def test_a_node_going_offline_is_stored_published_and_alerted_once(
    panel: Panel, panel_runtime: Runtime, sandbox: RunningSandbox, redis_client: redis.Redis
) -> None:
    # Given two online nodes seen once
    uuids = add_nodes(panel, 2)
    check_server_health()
    events = redis_client.pubsub()
    events.subscribe(EVENTS_CHANNEL)
    # When one goes offline and two runs see it
    set_state(panel, uuids[0], "offline")
    first = check_server_health()
    check_server_health()
    # Then its state and history say so, the change was published, and the admins got one alert
    current = json.loads(str(redis_client.get(current_key(uuids[0]))))
    assert current["status"] == "offline" and current["incident"] == "offline"
    history = [json.loads(m) for m in redis_client.zrange(history_key(uuids[0]), 0, -1)]
    assert [(h["from"], h["status"]) for h in history] == [("online", "offline")]
    published = [json.loads(m["data"]) for m in iter(lambda: events.get_message(timeout=1), None)
                 if m["type"] == "message"]  # fmt: skip
    assert [e["new"] for e in published if e["type"] == "node_status"] == ["offline"]
    [opened] = [e for e in published if e["type"] == "alert_opened"]
    assert opened["key"] == f"monitoring.node_offline.{uuids[0]}" and opened["severity"] == "error"
    [listed] = OpenAlerts(redis_client).all()  # the second run confirmed it
    assert listed.key == opened["key"] and listed.last_seen > listed.first_seen == opened["first_seen"]
    assert first["statuses"] == {"offline": 1, "online": 1}
    messages = admin_messages(panel_runtime, sandbox)
    assert len(messages) == 1 and "node-0 is OFFLINE" in messages[0] and messages[0].startswith("[ERROR]")


def test_fifty_nodes_going_down_at_once_make_one_grouped_alert(
    panel: Panel, panel_runtime: Runtime, sandbox: RunningSandbox
) -> None:
    uuids = add_nodes(panel, 50)
    check_server_health()
    for uuid in uuids:
        set_state(panel, uuid, "offline")
    check_server_health()
    messages = admin_messages(panel_runtime, sandbox)
    assert (
        len(messages) == 1 and "50 nodes went OFFLINE at once" in messages[0] and "and 30 more" in messages[0]
    )


def test_warning_and_maintenance_never_page_and_a_removed_node_is_gone(
    panel: Panel, panel_runtime: Runtime, sandbox: RunningSandbox, redis_client: redis.Redis
) -> None:
    uuids = add_nodes(panel, 3)
    check_server_health()
    set_state(panel, uuids[0], "connecting")
    set_state(panel, uuids[1], "disabled")
    report = check_server_health()
    assert report["statuses"] == {"warning": 1, "maintenance": 1, "online": 1}
    # a node the panel no longer lists is gone, not offline
    remaining = [n for n in panel_runtime.remnawave.nodes() if n.uuid != uuids[2]]
    check_health(remaining, redis_client, panel_runtime.alerts, now=time.time(), options=Options(Rules()))
    assert json.loads(str(redis_client.get(current_key(uuids[2]))))["status"] == "gone"
    assert admin_messages(panel_runtime, sandbox) == []


def test_redis_down_during_a_run_logs_once_and_the_next_run_records_the_states(
    panel: Panel, panel_runtime: Runtime, redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    uuids = add_nodes(panel, 2)
    nodes = panel_runtime.remnawave.nodes()
    dead = redis.Redis.from_url(unreachable_redis_url(), decode_responses=True)
    report = check_health(nodes, dead, panel_runtime.alerts, now=time.time(), options=Options(Rules()))
    assert report.redis_down and report.statuses == {"online": 2}
    assert sum("Redis unavailable" in r.getMessage() for r in caplog.records) == 1
    check_health(nodes, redis_client, panel_runtime.alerts, now=time.time(), options=Options(Rules()))
    assert all(redis_client.get(current_key(u)) for u in uuids)


def test_the_gauge_follows_each_node(panel: Panel, panel_runtime: Runtime) -> None:
    from actors.monitoring.health import _gauge

    (uuid,) = add_nodes(panel, 1)
    set_state(panel, uuid, "offline")
    check_server_health()
    gauge: Any = _gauge()
    assert gauge.labels("node-0", "offline")._value.get() == 1
    assert gauge.labels("node-0", "online")._value.get() == 0
