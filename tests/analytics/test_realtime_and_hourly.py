"""update_realtime_metrics and aggregate_bandwidth_hourly on the real services: the sandbox panel's
nodes, snapshots and events in Redis; the realtime key's TTL and ``worker-app stats``."""

from __future__ import annotations

import json
import os
import subprocess
import time
from datetime import UTC, datetime, timedelta

import redis

from actors.analytics.hourly import HOUR, floor_hour, hourly_key, run
from actors.analytics.realtime import REALTIME_KEY, update_realtime_metrics
from actors.monitoring.bandwidth import snapshots_key
from tests.fixtures.api import WORKER_APP
from tests.fixtures.remnawave import Panel
from worker_app.events import new_event, publish
from worker_app.runtime import Runtime


def snap(client: redis.Redis, node: str, at: float, size: int) -> None:
    member = {"at": at, "bytes": size, "since": at - 300, "reset": False}
    client.zadd(snapshots_key(node), {json.dumps(member): at})


def test_the_realtime_snapshot_sums_nodes_bandwidth_and_events_and_expires(
    panel: Panel, panel_runtime: Runtime, redis_client: redis.Redis
) -> None:
    a, b, _ = panel.add_nodes(
        {"name": "a", "countryCode": "DE", "state": "online", "usersOnline": 40},
        {"name": "b", "countryCode": "NL", "state": "online", "usersOnline": 2},
        {"name": "c", "countryCode": "FI", "state": "disabled", "usersOnline": 0},
    )
    now = time.time()
    snap(redis_client, a, now - 30, 3_000_000)
    snap(redis_client, b, now - 3_000, 9_999)  # older than 10 minutes: not "now"
    publish(redis_client, [new_event("node_status", now - n, node=str(n)) for n in range(8)])

    summary = update_realtime_metrics()
    assert summary["online_users"] == 42 and summary["servers_active"] == 2
    figures = json.loads(redis_client.get(REALTIME_KEY) or "{}")
    assert figures["servers"] == {"active": 2, "total": 3, "disabled": 1}
    assert figures["bandwidth"] == {"bytes": 3_000_000, "bytes_per_s": 10_000, "nodes": 1, "interval_s": 300}
    assert [e["node"] for e in figures["events"]] == ["7", "6", "5", "4", "3"]  # the 5 newest first
    assert 0 < redis_client.ttl(REALTIME_KEY) <= 120

    env = {**os.environ, "REMNAWAVE_URL": panel.url}
    shown = subprocess.run(
        [WORKER_APP, "stats"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert shown.returncode == 0, shown.stderr
    assert "online users  42" in shown.stdout and "servers       2 active of 3 (1 disabled)" in shown.stdout
    assert "10000 bytes/s over 1 node(s)" in shown.stdout and shown.stdout.count("node_status") == 5
    redis_client.delete(REALTIME_KEY)
    gone = subprocess.run(
        [WORKER_APP, "stats"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert gone.returncode == 1 and "no realtime snapshot" in gone.stderr


def test_hourly_sums_each_hour_keeps_unknown_hours_and_prunes_whole_hours(redis_client: redis.Redis) -> None:
    now = datetime.now(UTC)
    hour = floor_hour(now) - 3 * HOUR
    for minute, size in ((5, 100), (30, 300), (55, 200)):
        snap(redis_client, "n1", (hour + timedelta(minutes=minute)).timestamp(), size)
    snap(redis_client, "n1", (hour + HOUR).timestamp(), 999)  # the next hour's first
    ttl, retention = timedelta(days=30), timedelta(hours=48)

    made = run(redis_client, {"n1": "node-1"}, [hour, hour - HOUR], now=now, ttl=ttl, retention=retention)
    assert (made.written, made.empty, made.pruned) == (1, 1, 0)
    assert json.loads(redis_client.get(hourly_key("n1", hour)) or "{}") == {
        "node": "n1", "name": "node-1", "hour": hour.strftime("%Y-%m-%dT%H"), "sum_bytes": 600,
        "avg_bytes": 200, "min_bytes": 100, "max_bytes": 300, "snapshots": 3,
    }  # fmt: skip
    assert redis_client.get(hourly_key("n1", hour - HOUR)) is None  # no snapshots: unknown, not zero
    assert 29 * 86_400 < redis_client.ttl(hourly_key("n1", hour)) <= 30 * 86_400

    # 48 hours later the raw hour is pruned (whole), and running the hour again keeps its key
    later = now + timedelta(hours=48)
    made = run(redis_client, {"n1": "node-1"}, [hour], now=later, ttl=ttl, retention=retention)
    assert (made.written, made.pruned) == (0, 4)  # every snapshot before the hour 48 h ago
    assert json.loads(redis_client.get(hourly_key("n1", hour)) or "{}")["sum_bytes"] == 600
    assert redis_client.zcard(snapshots_key("n1")) == 0
