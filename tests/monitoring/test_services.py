"""check_external_services: real probes of the real services and of the sandbox, faults injected."""

from __future__ import annotations

import time

import pytest
import redis

from actors.monitoring.services import ServiceMonitor, default_probes, next_state, probe_all
from sandbox.server import RunningSandbox
from tests.fixtures.notifications import admin_messages, unreachable_redis_url
from tests.fixtures.remnawave import Panel
from worker_app.runtime import Runtime


def test_a_service_is_down_after_a_failure_and_counts_its_failures_in_a_row() -> None:
    first = next_state(None, "redis", 3.0, "ConnectionError: refused", now=10)
    second = next_state(first, "redis", 3.0, "ConnectionError: refused", now=70)
    back = next_state(second, "redis", 1.0, None, now=130)
    assert (first.status, first.failures, second.failures, second.since) == ("down", 1, 2, 10)
    assert (back.status, back.failures, back.since) == ("up", 0, 130)


def test_every_real_probe_answers_when_everything_is_up(
    panel: Panel, panel_runtime: Runtime, rabbitmq_vhost: str
) -> None:
    results = probe_all(default_probes(panel_runtime, 5.0), 5.0)
    assert {name: error for name, (_, error) in results.items()} == dict.fromkeys(
        ("remnawave", "postgresql", "redis", "telegram", "rabbitmq")
    )


def test_three_failures_in_a_row_alert_once_and_the_return_once(
    panel: Panel, panel_runtime: Runtime, sandbox: RunningSandbox, redis_client: redis.Redis
) -> None:
    monitor = ServiceMonitor(redis_client, panel_runtime.alerts, down_after=3)
    probes = {"remnawave": panel_runtime.remnawave.system_health}
    panel.faults(server_error={"count": 4, "status": 503})
    states = [monitor.run(probes, 5.0, now=float(t))["remnawave"] for t in range(4)]
    assert [s.failures for s in states] == [1, 2, 3, 4]
    assert len(admin_messages(panel_runtime, sandbox)) == 1  # at the third, not again at the fourth
    back = monitor.run(probes, 5.0, now=5.0)["remnawave"]
    messages = admin_messages(panel_runtime, sandbox)
    assert back.status == "up" and len(messages) == 2
    assert "remnawave is DOWN: 3 probes failed in a row" in messages[0] and "remnawave is back" in messages[1]


def test_redis_down_is_probed_alerted_and_never_crashes_the_run(
    panel_runtime: Runtime, sandbox: RunningSandbox, caplog: pytest.LogCaptureFixture
) -> None:
    dead = redis.Redis.from_url(unreachable_redis_url(), decode_responses=True, socket_connect_timeout=1)
    monitor = ServiceMonitor(dead, panel_runtime.alerts, down_after=3)
    for t in range(3):
        states = monitor.run({"redis": dead.ping}, 2.0, now=time.time() + t)
    assert states["redis"].status == "down" and states["redis"].failures == 3
    assert any("redis is DOWN" in m for m in admin_messages(panel_runtime, sandbox))
    assert "kept in this process" in caplog.text
