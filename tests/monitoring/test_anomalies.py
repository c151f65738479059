"""check_anomalies: every rule driven across its threshold and back on the real inputs (Redis counts
and heartbeats, node states from the sandbox panel, a RabbitMQ queue), alerts to the sandbox
Telegram: one alert when it trips, none while it stays tripped, one resolved message when it clears.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pika
import pytest
import redis

from actors.monitoring.anomalies import Thresholds, check, judge_anomalies, read
from actors.monitoring.health import Options, check_health
from sandbox.server import RunningSandbox
from tests.fixtures.notifications import admin_messages, unreachable_redis_url
from tests.fixtures.remnawave import Panel
from tests.fixtures.worker import wait_for
from tests.monitoring.test_health import add_nodes, set_state
from worker_app.events import EVENTS_CHANNEL
from worker_app.open_alerts import OPEN_KEY, SEEN_KEY, OpenAlerts
from worker_app.rolling import RollingCounts
from worker_app.runtime import Runtime
from worker_app.workers import WorkerHeartbeats, alive_workers

T = Thresholds()


def judge(runtime: Runtime, now: float, thresholds: Thresholds = T) -> dict[str, Any]:
    readings = read(runtime.redis, runtime.settings, thresholds, now)
    return check(readings, OpenAlerts(runtime.redis), runtime.alerts, thresholds, now=now).summary()


def across_and_back(
    runtime: Runtime, sandbox: RunningSandbox, trip: Callable[[], float], calm: Callable[[], float],
    rule: str, words: str,
) -> list[str]:  # fmt: skip
    """Calm, tripped twice, calm twice: the messages; asserts the open alert's life on the way."""
    assert judge(runtime, calm())["opened"] == []
    first_at = trip()
    first = judge(runtime, first_at)
    assert first["breached"][rule] == 1 and len(first["opened"]) == 1
    [key] = first["opened"]
    assert key.startswith(f"anomaly.{rule}")
    again_at = trip()
    again = judge(runtime, again_at)
    assert again["opened"] == [] and again["breached"][rule] == 1
    [listed] = OpenAlerts(runtime.redis).all()
    assert listed.key == key and listed.source == "check_anomalies"
    assert (listed.first_seen, listed.last_seen) == (pytest.approx(first_at), pytest.approx(again_at))
    cleared = judge(runtime, calm())
    assert cleared["resolved"] == [key] and OpenAlerts(runtime.redis).all() == []
    assert judge(runtime, calm())["resolved"] == []
    messages = admin_messages(runtime, sandbox)
    assert len(messages) == 2, messages
    assert messages[0].startswith("[") and f"ANOMALY: {words}" in messages[0]
    assert messages[1].startswith("[INFO] RESOLVED after ") and words in messages[1]
    return messages


def test_task_error_rate_over_the_window(
    make_runtime: Any, sandbox: RunningSandbox, redis_client: redis.Redis
) -> None:
    runtime = make_runtime()
    tasks = RollingCounts(redis_client, "tasks")
    now = time.time()
    clock = [now]

    def record(processed: int, failed: int) -> Callable[[], float]:
        def at() -> float:
            clock[0] += 16 * 60  # a window of its own each time
            tasks.add({"payments:processed": processed, "payments:failed": failed,
                       "notifications:processed": processed}, clock[0])  # fmt: skip
            return clock[0]

        return at

    # 200 attempts in the window: none failed is calm, 30 (15 %) trips
    messages = across_and_back(
        runtime, sandbox, record(100, 30), record(100, 0), "error_rate", "task error rate"
    )
    assert "15.0% over the last 15 min (30 of 200 attempts failed; payments 30/100)" in messages[0]
    assert messages[0].startswith("[WARNING]")


def test_error_rate_is_not_judged_on_too_few_attempts(make_runtime: Any, redis_client: redis.Redis) -> None:
    runtime = make_runtime()
    now = time.time()
    RollingCounts(redis_client, "tasks").add({"sync:processed": 3, "sync:failed": 3}, now)
    assert judge(runtime, now)["breached"]["error_rate"] == 0


def test_the_error_rate_window_forgets_old_failures(make_runtime: Any, redis_client: redis.Redis) -> None:
    runtime = make_runtime()
    now = time.time()
    tasks = RollingCounts(redis_client, "tasks")
    tasks.add({"sync:processed": 100, "sync:failed": 100}, now - 20 * 60)
    tasks.add({"sync:processed": 100}, now)
    assert tasks.window(900, now) == {"sync:processed": 100}
    assert judge(runtime, now)["breached"]["error_rate"] == 0


def test_payment_failure_rate(make_runtime: Any, sandbox: RunningSandbox, redis_client: redis.Redis) -> None:
    runtime = make_runtime()
    payments = RollingCounts(redis_client, "payments")
    clock = [time.time()]

    def record(completed: int, failed: int) -> Callable[[], float]:
        def at() -> float:
            clock[0] += 3600  # a fresh window each time
            payments.add({"completed": completed, "failed": failed}, clock[0])
            return clock[0]

        return at

    messages = across_and_back(
        runtime, sandbox, record(8, 2), record(19, 1), "payment_failure", "payment failure"
    )
    assert messages[0].startswith("[CRITICAL]") and "2 of 10 payments failed" in messages[0]


def test_no_payments_yet_is_not_a_breach(make_runtime: Any) -> None:
    assert judge(make_runtime(), time.time())["breached"]["payment_failure"] == 0


def test_worker_memory_against_its_limit(
    make_runtime: Any, sandbox: RunningSandbox, redis_client: redis.Redis
) -> None:
    runtime = make_runtime()

    class Worker:
        consumer_whitelist = {"reports"}
        worker_threads = 2

    def beat(limit_mb: int) -> Callable[[], float]:
        def at() -> float:
            heartbeat = WorkerHeartbeats(redis_client, memory_limit_mb=limit_mb)
            heartbeat._worker = Worker()
            heartbeat.beat()
            return time.time()

        return at

    # this test process's RSS against a limit of 1 MB (over) and of 1 TB (far under)
    messages = across_and_back(runtime, sandbox, beat(1), beat(1 << 20), "worker_memory", "worker ")
    assert "of its memory limit" in messages[0] and "WORKER_MEMORY_LIMIT_MB" in messages[0]
    [worker] = alive_workers(redis_client)
    assert worker.memory_source == "WORKER_MEMORY_LIMIT_MB" and worker.memory_used > 0


def test_a_node_offline_for_longer_than_the_threshold_is_escalated(
    panel: Panel, panel_runtime: Runtime, sandbox: RunningSandbox
) -> None:
    [uuid] = add_nodes(panel, 1)
    nodes, redis_client, alerts = panel_runtime.remnawave.nodes, panel_runtime.redis, panel_runtime.alerts
    down_at = time.time()
    check_health(nodes(), redis_client, alerts, now=down_at - 1, options=Options())
    set_state(panel, uuid, "offline")
    check_health(nodes(), redis_client, alerts, now=down_at, options=Options())
    assert judge(panel_runtime, down_at + T.node_offline_s - 1)["breached"]["node_offline"] == 0

    def offline() -> float:
        return down_at + T.node_offline_s + 5

    back_at = down_at + T.node_offline_s + 100

    def online() -> float:
        nonlocal back_at
        set_state(panel, uuid, "online")
        back_at += 10
        check_health(nodes(), redis_client, alerts, now=back_at, options=Options())
        return back_at

    opened = judge(panel_runtime, offline())
    assert opened["opened"] == [f"anomaly.node_offline.{uuid}"]
    assert judge(panel_runtime, offline() + 60)["opened"] == []
    closed = judge(panel_runtime, online())
    assert closed["resolved"] == [f"anomaly.node_offline.{uuid}"]
    messages = admin_messages(panel_runtime, sandbox)
    assert messages[0].startswith("[ERROR] node node-0 is OFFLINE since")  # check_server_health's, at once
    anomaly = [m for m in messages if "ANOMALY" in m]
    assert len(anomaly) == 1 and anomaly[0].startswith(
        "[CRITICAL] ANOMALY: node node-0 has been OFFLINE for 5 min"
    )
    assert len([m for m in messages if m.startswith("[INFO] RESOLVED after ") and "node-0" in m]) == 1


@pytest.mark.rabbitmq
def test_queue_depth_over_the_limit(rabbitmq_vhost: str, make_runtime: Any, sandbox: RunningSandbox) -> None:
    runtime = make_runtime()
    low = Thresholds(queue_depth_max=20)
    connection = pika.BlockingConnection(pika.URLParameters(runtime.settings.rabbitmq_url.get_secret_value()))
    channel = connection.channel()
    channel.queue_declare("reports", durable=True, arguments={
        "x-dead-letter-exchange": "", "x-dead-letter-routing-key": "reports.XQ"})  # fmt: skip

    def ready() -> int:
        return judge_depth(runtime, low)

    def fill() -> float:
        for n in range(25):
            channel.basic_publish("", "reports", json.dumps({"n": n}).encode())
        wait_for(lambda: ready() > 20, 30, "the management API to count 25 ready messages")
        return time.time()

    def drain() -> float:
        channel.queue_purge("reports")
        wait_for(lambda: ready() == 0, 30, "the management API to count the purge")
        return time.time()

    try:
        messages = across_and_back_with(runtime, sandbox, fill, drain, low)
    finally:
        connection.close()
    assert "queue reports holds" in messages[0] and "(more than 20)" in messages[0]


def judge_depth(runtime: Runtime, thresholds: Thresholds) -> int:
    queues = read(runtime.redis, runtime.settings, thresholds, time.time()).queues
    assert queues is not None
    return queues["reports"]


def across_and_back_with(
    runtime: Runtime, sandbox: RunningSandbox, trip: Callable[[], float], calm: Callable[[], float],
    thresholds: Thresholds,
) -> list[str]:  # fmt: skip
    assert judge(runtime, calm(), thresholds)["opened"] == []
    first_at = trip()
    assert judge(runtime, first_at, thresholds)["opened"] == ["anomaly.queue_depth.reports"]
    assert judge(runtime, time.time(), thresholds)["opened"] == []
    assert judge(runtime, calm(), thresholds)["resolved"] == ["anomaly.queue_depth.reports"]
    messages = admin_messages(runtime, sandbox)
    assert len(messages) == 2 and messages[1].startswith("[INFO] RESOLVED after ")
    return messages


def test_an_unreadable_input_keeps_its_alerts_open(
    make_runtime: Any, sandbox: RunningSandbox, redis_client: redis.Redis
) -> None:
    # Given an open queue-depth alert
    runtime = make_runtime(
        RABBITMQ_URL="amqp://guest:guest@127.0.0.1:1/", RABBITMQ_MANAGEMENT_URL="http://127.0.0.1:1"
    )
    now = time.time()
    from worker_app.open_alerts import OpenAlert

    OpenAlerts(redis_client).open(
        OpenAlert("anomaly.queue_depth.reports", "warning", "deep", now, now, "test")
    )
    # When RabbitMQ cannot be asked, Then the rule is not judged and the alert stays open, unresolved
    summary = judge_anomalies(runtime)
    assert "queue_depth" in summary["unknown"] and summary["resolved"] == []
    assert [a.key for a in OpenAlerts(redis_client).all()] == ["anomaly.queue_depth.reports"]
    assert admin_messages(runtime, sandbox) == []


def test_redis_down_is_one_warning_not_a_crash(make_runtime: Any, caplog: pytest.LogCaptureFixture) -> None:
    runtime = make_runtime(REDIS_URL=unreachable_redis_url())
    summary = judge_anomalies(runtime)
    assert summary["redis_down"] is True
    warnings = [r for r in caplog.records if r.levelname == "WARNING" and r.name.startswith("actors.")]
    assert [w.getMessage().split(" (")[0] for w in warnings] == ["anomalies not judged: Redis unavailable"]


def test_opening_and_resolving_are_published(make_runtime: Any, redis_client: redis.Redis) -> None:
    runtime = make_runtime()
    events = redis_client.pubsub()
    events.subscribe(EVENTS_CHANNEL)
    now = time.time()
    RollingCounts(redis_client, "payments").add({"failed": 10}, now)
    judge(runtime, now)
    judge(runtime, now + 7200)
    published = [json.loads(m["data"]) for m in iter(lambda: events.get_message(timeout=1), None)
                 if m["type"] == "message"]  # fmt: skip
    assert [(e["type"], e["key"]) for e in published] == [
        ("alert_opened", "anomaly.payment_failure"), ("alert_resolved", "anomaly.payment_failure"),
    ]  # fmt: skip
    assert published[1]["open_s"] == pytest.approx(7200)
    assert redis_client.hlen(OPEN_KEY) == redis_client.hlen(SEEN_KEY) == 0


def test_worker_heartbeats_count_attempts_per_queue_for_the_error_rate(redis_client: redis.Redis) -> None:
    from types import SimpleNamespace

    from worker_app.errors import RateLimited, UpstreamUnavailable

    heartbeat = WorkerHeartbeats(redis_client)
    heartbeat._worker = SimpleNamespace(consumer_whitelist={"sync", "payments"}, worker_threads=1)
    sync, payments = SimpleNamespace(queue_name="sync"), SimpleNamespace(queue_name="payments")
    for message, exception in ((sync, None), (sync, UpstreamUnavailable("502")), (payments, None),
                               (payments, RateLimited("slow down", retry_after_s=1))):  # fmt: skip
        heartbeat.before_process_message(None, message)
        heartbeat.after_process_message(None, message, exception=exception)
    heartbeat.beat()
    heartbeat.beat()  # nothing new: nothing added twice
    assert RollingCounts(redis_client, "tasks").window(900, time.time()) == {
        "sync:processed": 2, "sync:failed": 1, "payments:processed": 2,
    }  # fmt: skip
