"""``collect_bandwidth_snapshots`` (every 5 min): bytes each node carried since the last snapshot.

From the panel's per-node ``trafficUsedBytes`` counter (the bandwidth summary endpoint answers
human-readable strings, never parsed). Per node:

* ``cybervpn:bandwidth:{uuid}:last`` — the counter at the last snapshot (JSON: bytes, at);
* ``cybervpn:bandwidth:{uuid}:snapshots`` — sorted set, one member per interval (JSON: at, bytes,
  since, reset), score = the time; entries older than BANDWIDTH_RETENTION_H are trimmed, by whole hours.

A counter that went down (the node's traffic was reset) starts a new baseline: that interval
records the counter's value — what was used since the reset — flagged ``reset``, never a negative
number. A node's first snapshot only sets the baseline.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from typing import Any

import dramatiq
import redis

from worker_app.clients.remnawave import Node
from worker_app.redis_client import key
from worker_app.runtime import get_runtime

QUEUE = "monitoring"
log = logging.getLogger(__name__)


def last_key(uuid: str) -> str:
    return key("bandwidth", uuid, "last")


def snapshots_key(uuid: str) -> str:
    return key("bandwidth", uuid, "snapshots")


def trim_before(now: float, retention_h: int) -> float:
    """Snapshots before this are dropped: ``retention_h`` ago, rounded down to the hour, so an hour
    is kept or dropped whole (``aggregate_bandwidth_hourly`` never sees a partial hour)."""
    cutoff = now - retention_h * 3600
    return cutoff - cutoff % 3600


def delta(previous: dict[str, Any] | None, current: int) -> tuple[int, bool] | None:
    """Bytes since ``previous`` and whether the counter was reset; ``None`` for a first sight."""
    if previous is None:
        return None
    used = current - int(previous["bytes"])
    return (current, True) if used < 0 else (used, False)


def collect_snapshots(
    nodes: Sequence[Node], redis_client: redis.Redis, *, now: float, retention_h: int
) -> dict[str, int]:
    """Record one snapshot per node; counts of ``recorded``, ``baseline`` and ``reset``."""
    counts = {"recorded": 0, "baseline": 0, "reset": 0}
    raw = redis_client.mget([last_key(n.uuid) for n in nodes]) if nodes else []
    with redis_client.pipeline(transaction=False) as pipe:
        for node, last in zip(nodes, raw, strict=True):
            previous = json.loads(last) if last else None
            found = delta(previous, node.traffic_used_bytes)
            pipe.set(last_key(node.uuid), json.dumps({"bytes": node.traffic_used_bytes, "at": now}))
            if found is None:
                counts["baseline"] += 1
                continue
            used, reset = found
            counts["reset" if reset else "recorded"] += 1
            member = {"at": now, "bytes": used, "since": previous["at"] if previous else now, "reset": reset}
            pipe.zadd(snapshots_key(node.uuid), {json.dumps(member): now})
            pipe.zremrangebyscore(snapshots_key(node.uuid), 0, f"({trim_before(now, retention_h)}")
        pipe.execute()
    return counts


@dramatiq.actor(queue_name=QUEUE, store_results=True)
def collect_bandwidth_snapshots() -> dict[str, Any]:
    """Bytes per node since the previous snapshot (every 5 min), kept BANDWIDTH_RETENTION_H."""
    runtime = get_runtime()
    started = time.monotonic()
    counts = collect_snapshots(
        runtime.remnawave.nodes(),
        runtime.redis,
        now=time.time(),
        retention_h=runtime.settings.bandwidth_retention_h,
    )
    summary = {"job": "collect_bandwidth_snapshots", "counts": counts,
               "duration_s": round(time.monotonic() - started, 3)}  # fmt: skip
    log.info("monitoring job done: collect_bandwidth_snapshots %s", counts, extra=summary)
    return summary
