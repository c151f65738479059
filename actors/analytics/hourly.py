"""``aggregate_bandwidth_hourly`` (:05 every hour): each node's 5-minute bandwidth snapshots of an
hour summed into ``cybervpn:bandwidth:hourly:{node}:{YYYY-MM-DDTHH}``, then raw snapshots older than
``BANDWIDTH_RETENTION_H`` (48) pruned.

The snapshots are what ``collect_bandwidth_snapshots`` records (:mod:`actors.monitoring.bandwidth`):
per node, a sorted set of ``{at, bytes, since, reset}`` scored by ``at``. An hour's key holds
``{node, name, hour, sum_bytes, avg_bytes, min_bytes, max_bytes, snapshots}`` (bytes carried per
snapshot interval; TTL ``ANALYTICS_HOURLY_TTL_DAYS``, 30 d).

Idempotent: an hour is recomputed from the snapshots and overwritten. An hour with no snapshots left
(pruned, or the collector was not running) writes nothing and keeps whatever key it had — a missing
hour means unknown, never zero. Raw snapshots are trimmed by whole hours (the retention boundary
rounded down to the hour), and an hour older than that boundary that already has a key keeps it.
The nodes are those the panel lists now and those the health checks have seen
(``cybervpn:health:nodes``), so a node removed from the panel still gets its last hours.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import dramatiq
import redis

from actors.analytics import QUEUE
from actors.monitoring.bandwidth import snapshots_key, trim_before
from actors.monitoring.health import NODES_KEY
from worker_app.redis_client import key
from worker_app.runtime import get_runtime

log = logging.getLogger(__name__)
HOUR = timedelta(hours=1)


#: An hour as its key names it: ``2026-12-06T13``.
HOUR_FORMAT = "%Y-%m-%dT%H"
#: ``cybervpn:bandwidth:hourly:{node}:{hour}``.
HOURLY_KEY = key("bandwidth", "hourly", "{node}", "{hour}")


def hour_label(hour: datetime) -> str:
    """``2026-12-06T13`` for the hour starting 13:00 UTC."""
    return hour.astimezone(UTC).strftime(HOUR_FORMAT)


def hourly_key(node_uuid: str, hour: datetime) -> str:
    return HOURLY_KEY.format(node=node_uuid, hour=hour_label(hour))


def floor_hour(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


@dataclass(frozen=True)
class HourlyRun:
    hours: int
    written: int
    empty: int
    pruned: int

    def summary(self) -> dict[str, int]:
        return {"hours": self.hours, "written": self.written, "empty": self.empty, "pruned": self.pruned}


def known_nodes(redis_client: redis.Redis, panel_nodes: Mapping[str, str]) -> dict[str, str]:
    """Node uuid → name: the panel's now, plus those the health checks remember (named by uuid)."""
    seen = {str(u): str(u) for u in redis_client.smembers(NODES_KEY)}
    return {**seen, **panel_nodes}


def aggregate_hours(
    redis_client: redis.Redis, nodes: Mapping[str, str], hours: Iterable[datetime], *, ttl: timedelta,
    kept_from: datetime,
) -> tuple[int, int]:  # fmt: skip
    """Write each node's key for each hour that has snapshots; (keys written, node-hours without).

    Raw snapshots are complete only from ``kept_from`` (the retention boundary, on the hour) on: an
    hour before it that has a key keeps it (its raw data may be partly trimmed already)."""
    written = empty = 0
    for hour in hours:
        start = floor_hour(hour)
        end = start + HOUR
        with redis_client.pipeline(transaction=False) as pipe:
            for uuid in nodes:  # snapshot ``at`` in [start, end): the interval ending in this hour
                pipe.zrangebyscore(snapshots_key(uuid), start.timestamp(), f"({end.timestamp()}")
                pipe.exists(hourly_key(uuid, start))
            found = pipe.execute()
        with redis_client.pipeline(transaction=False) as pipe:
            for (uuid, name), members, exists in zip(nodes.items(), found[::2], found[1::2], strict=True):
                sizes = [int(json.loads(m)["bytes"]) for m in members]
                if not sizes or (exists and start < kept_from):
                    empty += 1
                    continue
                summary = {
                    "node": uuid, "name": name, "hour": hour_label(start), "sum_bytes": sum(sizes),
                    "avg_bytes": sum(sizes) // len(sizes), "min_bytes": min(sizes), "max_bytes": max(sizes),
                    "snapshots": len(sizes),
                }  # fmt: skip
                pipe.set(hourly_key(uuid, start), json.dumps(summary), ex=ttl)
                written += 1
            pipe.execute()
    return written, empty


def prune(redis_client: redis.Redis, nodes: Iterable[str], *, older_than: datetime) -> int:
    """Drop raw snapshots older than ``older_than``; how many."""
    with redis_client.pipeline(transaction=False) as pipe:
        for uuid in nodes:
            pipe.zremrangebyscore(snapshots_key(uuid), 0, f"({older_than.timestamp()}")
        return sum(int(n) for n in pipe.execute())


def hours_of(first: datetime, last: datetime) -> list[datetime]:
    """Every hour from ``first``'s to ``last``'s, inclusive."""
    start, end = floor_hour(first), floor_hour(last)
    return [start + i * HOUR for i in range(int((end - start) / HOUR) + 1)]


def run(
    redis_client: redis.Redis, nodes: Mapping[str, str], hours: list[datetime], *, now: datetime,
    ttl: timedelta, retention: timedelta,
) -> HourlyRun:  # fmt: skip
    """Aggregate ``hours`` of ``nodes`` (uuid → name: :func:`known_nodes`), then prune what is older
    than ``retention`` (after, so a backfill of old hours reads them first)."""
    kept_from = datetime.fromtimestamp(trim_before(now.timestamp(), int(retention / HOUR)), UTC)
    written, empty = aggregate_hours(redis_client, nodes, hours, ttl=ttl, kept_from=kept_from)
    pruned = prune(redis_client, nodes, older_than=kept_from)
    return HourlyRun(len(hours), written, empty, pruned)


@dramatiq.actor(queue_name=QUEUE, store_results=True)
def aggregate_bandwidth_hourly() -> dict[str, Any]:
    """Sum the last full hour's (and the one before: a snapshot may land late) bandwidth snapshots
    per node into ``cybervpn:bandwidth:hourly:{node}:{hour}``; prune raw snapshots past retention."""
    runtime = get_runtime()
    settings = runtime.settings
    now = datetime.now(UTC)
    last = floor_hour(now) - HOUR
    nodes = known_nodes(runtime.redis, {n.uuid: n.name for n in runtime.remnawave.nodes()})
    report = run(runtime.redis, nodes, [last - HOUR, last], now=now,
                 ttl=timedelta(days=settings.analytics_hourly_ttl_days),
                 retention=timedelta(hours=settings.bandwidth_retention_h))  # fmt: skip
    summary = {"job": "aggregate_bandwidth_hourly", "hour": hour_label(last), **report.summary()}
    log.info("analytics job done: aggregate_bandwidth_hourly %s", report.summary(), extra=summary)
    return summary
