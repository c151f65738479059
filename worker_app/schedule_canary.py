"""The scheduler canary: a periodic no-op whose runs prove that scheduled work reaches a worker.

``cybervpn:scheduler:canary`` (TTL 1 day) = ``{job, scheduled_at, started_at, lag_s, message_id,
pid, host}`` of the last run; ``worker-app schedules`` shows it. A canary that stops updating means
the scheduler is not firing or no worker consumes ``monitoring``.
"""

from __future__ import annotations

import json
import os
import socket
from datetime import UTC, datetime
from typing import Any

import dramatiq
import redis

from worker_app.middleware.scheduled import fire_of
from worker_app.redis_client import key

CANARY_TTL_S = 86_400


def canary_key() -> str:
    return key("scheduler", "canary")


def record_canary(client: redis.Redis, message: dramatiq.Message[Any] | None) -> dict[str, Any]:
    """Write the canary record of ``message`` (a scheduled message, or an ad-hoc send)."""
    now = datetime.now(UTC)
    fire = fire_of(message) if message is not None else None
    scheduled_at = fire[1] if fire else None
    record = {
        "job": fire[0] if fire else None,
        "scheduled_at": scheduled_at.isoformat() if scheduled_at else None,
        "started_at": now.isoformat(),
        "lag_s": round((now - scheduled_at).total_seconds(), 3) if scheduled_at else None,
        "message_id": message.message_id if message is not None else None,
        "pid": os.getpid(),
        "host": socket.gethostname(),
    }
    client.set(canary_key(), json.dumps(record), ex=CANARY_TTL_S)
    return record


def read_canary(client: redis.Redis) -> dict[str, Any] | None:
    raw = client.get(canary_key())
    return dict(json.loads(str(raw))) if raw else None
