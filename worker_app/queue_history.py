"""Queue depths over time, kept in Redis so the dashboard charts them without Prometheus.

The monitoring job ``sample_queue_depths`` (every minute) calls :func:`record` with the queue report;
each sample is one hash ``cybervpn:queue_depths:<unix minute>`` — fields ``<queue>|ready``,
``<queue>|delayed``, ``<queue>|dead`` (an ordered domain's shards summed under the domain) →
messages — expiring after :data:`KEEP_S`, so at most 25 hours' worth (1,500 small hashes) exist.
:func:`history` reads the samples of the given minutes in one round trip; a minute with no sample
(no worker ran the job, Redis was down) comes back empty, not as zeros.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import redis

from worker_app.ordered import domain_of
from worker_app.queues import QueueReport
from worker_app.redis_client import key

KEEP_S = 25 * 3600
STATES = ("ready", "delayed", "dead")


def _key(minute: int) -> str:
    return key("queue_depths", str(minute))


@dataclass(frozen=True)
class Sample:
    """One minute's depths: ``depths[queue][state]``; empty when that minute has no sample."""

    minute: int
    depths: dict[str, dict[str, int]] = field(default_factory=dict)

    def total(self, state: str) -> int | None:
        """Every queue's ``state`` messages together; ``None`` without a sample."""
        if not self.depths:
            return None
        return sum(by_state.get(state, 0) for by_state in self.depths.values())


def record(client: redis.Redis, report: QueueReport, now: float) -> int:
    """Write ``report`` as the sample of the minute holding ``now``; the number of queues written."""
    summed: dict[str, dict[str, int]] = {}
    for q in report.queues:
        by_state = summed.setdefault(domain_of(q.queue), dict.fromkeys(STATES, 0))
        by_state["ready"] += q.ready
        by_state["delayed"] += q.delayed
        by_state["dead"] += q.dead
    if not summed:
        return 0
    name = _key(int(now // 60))
    pipe = client.pipeline(transaction=False)
    for queue, by_state in summed.items():
        for state, n in by_state.items():
            pipe.hset(name, f"{queue}|{state}", n)
    pipe.expire(name, KEEP_S)
    pipe.execute()
    return len(summed)


def history(client: redis.Redis, minutes: Sequence[int]) -> list[Sample]:
    """The samples of ``minutes`` (unix minutes), in that order. Raises :class:`redis.RedisError`."""
    pipe = client.pipeline(transaction=False)
    for minute in minutes:
        pipe.hgetall(_key(minute))
    samples = []
    for minute, found in zip(minutes, pipe.execute(), strict=True):
        depths: dict[str, dict[str, int]] = {}
        for name, value in found.items():
            queue, _, state = str(name).rpartition("|")
            depths.setdefault(queue, {})[state] = int(value)
        samples.append(Sample(minute, depths))
    return samples
