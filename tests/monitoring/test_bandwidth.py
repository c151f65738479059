"""collect_bandwidth_snapshots: deltas of the panel's per-node traffic counters, in real Redis."""

from __future__ import annotations

import json

import redis

from actors.monitoring.bandwidth import collect_snapshots, delta, snapshots_key
from worker_app.clients.remnawave import Node


def node(used: int) -> Node:
    return Node("n1", "de-1", "DE", True, False, False, traffic_used_bytes=used, users_online=0, raw={})


def test_a_delta_is_bytes_since_the_last_snapshot_and_a_reset_starts_a_new_baseline() -> None:
    assert delta(None, 500) is None
    assert delta({"bytes": 500, "at": 0}, 800) == (300, False)
    assert delta({"bytes": 800, "at": 0}, 120) == (120, True)  # counter reset: never negative


def test_snapshots_are_recorded_per_interval_and_trimmed_after_the_retention(
    redis_client: redis.Redis,
) -> None:
    # Given a node seen at three intervals, its counter reset before the third
    for now, used in ((1_000.0, 5_000), (1_300.0, 7_500), (1_600.0, 1_000)):
        counts = collect_snapshots([node(used)], redis_client, now=now, retention_h=48)
    snapshots = [json.loads(m) for m in redis_client.zrange(snapshots_key("n1"), 0, -1)]
    # Then the first only set the baseline, the next two are the bytes of their interval
    assert [(s["bytes"], s["reset"], s["since"]) for s in snapshots] == [
        (2_500, False, 1_000.0),
        (1_000, True, 1_300.0),
    ]
    assert counts == {"recorded": 0, "baseline": 0, "reset": 1}
    # And the retention trims whole hours: 1,300 is past it but its hour (0–3,600) is kept whole…
    later = 1_600.0 + 48 * 3600 - 100
    collect_snapshots([node(2_000)], redis_client, now=later, retention_h=48)
    kept = [json.loads(m)["at"] for m in redis_client.zrange(snapshots_key("n1"), 0, -1)]
    assert kept == [1_300.0, 1_600.0, later]
    # …until the whole hour is past it
    latest = 3_600.0 + 48 * 3600 + 10
    collect_snapshots([node(3_000)], redis_client, now=latest, retention_h=48)
    kept = [json.loads(m)["at"] for m in redis_client.zrange(snapshots_key("n1"), 0, -1)]
    assert kept == [later, latest]
