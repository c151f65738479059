"""Per-queue heartbeats: a tiny actor on every domain queue that proves the queue is consumed.

``worker-app ping`` sends one to each queue; the worker that runs it writes
``cybervpn:worker:heartbeat:<queue>`` = ``{nonce, sent_at_ms, received_at_ms, latency_ms, pid,
host}`` (TTL 1 day). A queue whose heartbeat does not come back is not being consumed.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from typing import Any

import dramatiq
import redis

from worker_app.redis_client import key
from worker_app.runtime import get_runtime

HEARTBEAT_TTL_S = 86_400


def heartbeat_key(queue: str) -> str:
    """Redis key holding the last heartbeat seen on ``queue``."""
    return key("worker", "heartbeat", queue)


def record_heartbeat(client: redis.Redis, queue: str, nonce: str, sent_at_ms: int) -> dict[str, Any]:
    """Write the heartbeat of ``queue``; returns what was written."""
    now_ms = int(time.time() * 1000)
    beat = {
        "nonce": nonce,
        "sent_at_ms": sent_at_ms,
        "received_at_ms": now_ms,
        "latency_ms": now_ms - sent_at_ms,
        "pid": os.getpid(),
        "host": socket.gethostname(),
    }
    client.set(heartbeat_key(queue), json.dumps(beat), ex=HEARTBEAT_TTL_S)
    return beat


def declare_heartbeat(queue: str) -> dramatiq.Actor[[str, int], None]:
    """Declare the ``heartbeat_<queue>`` actor on ``queue``."""

    def heartbeat(nonce: str, sent_at_ms: int) -> None:
        record_heartbeat(get_runtime().redis, queue, nonce, sent_at_ms)

    heartbeat.__doc__ = f"Proves the {queue!r} queue is consumed (see worker_app.heartbeat)."
    declare = dramatiq.actor(actor_name=f"heartbeat_{queue}", queue_name=queue, max_age=3_600_000)
    return declare(heartbeat)


def ping(
    broker: dramatiq.Broker, client: redis.Redis, queues: list[str], timeout_s: float, poll_s: float = 0.2
) -> dict[str, dict[str, Any] | None]:
    """Send a heartbeat to each queue and wait for each to come back; ``None`` for silent queues."""
    nonce = uuid.uuid4().hex
    sent_at_ms = int(time.time() * 1000)
    for queue in queues:
        broker.get_actor(f"heartbeat_{queue}").send(nonce, sent_at_ms)
    deadline = time.monotonic() + timeout_s
    answers: dict[str, dict[str, Any] | None] = dict.fromkeys(queues)
    while time.monotonic() < deadline and any(v is None for v in answers.values()):
        for queue in [q for q, v in answers.items() if v is None]:
            raw = client.get(heartbeat_key(queue))
            beat = json.loads(str(raw)) if raw else None
            if beat and beat.get("nonce") == nonce:
                answers[queue] = beat
        time.sleep(poll_s)
    return answers
