"""Platform events for live views: JSON on the Redis pub/sub channel ``cybervpn:events``, served to
the admin SPA as Server-Sent Events by ``GET /api/v1/events`` (:mod:`worker_app.web.events`).

Every event is a JSON object with at least ``type`` and ``at`` (unix seconds). Types so far:
``node_status`` (monitoring), ``service_status`` (monitoring), ``alert_opened`` and
``alert_resolved`` (:mod:`worker_app.open_alerts`). Publishing is best effort: pub/sub keeps nothing
for a subscriber that is not listening, so the stored state (the keys each event names) stays the
truth, and a client that reconnects reads it again. The newest ``RECENT_MAX`` (50) are also kept in
the list ``cybervpn:events:recent`` (newest first), for the realtime dashboard snapshot.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import Any

import redis

from worker_app.redis_client import key

EVENTS_CHANNEL = key("events")
#: The newest events, newest first (a capped list): what a dashboard shows before any arrives live.
RECENT_KEY = key("events", "recent")
RECENT_MAX = 50
log = logging.getLogger(__name__)


def new_event(type_: str, at: float, **fields: Any) -> dict[str, Any]:
    """An event dict: ``{"type": type_, **fields, "at": at}``."""
    return {"type": type_, **fields, "at": at}


def publish(client: redis.Redis | Any, events: Iterable[dict[str, Any]]) -> None:
    """Publish ``events`` on ``client`` (a Redis client or a pipeline, which the caller executes);
    raises :class:`redis.RedisError` from a client (a pipeline raises on execute)."""
    bodies = [json.dumps(item, separators=(",", ":")) for item in events]
    for body in bodies:
        client.publish(EVENTS_CHANNEL, body)
    if bodies:
        client.lpush(RECENT_KEY, *bodies)
        client.ltrim(RECENT_KEY, 0, RECENT_MAX - 1)


def recent(client: redis.Redis, count: int) -> list[dict[str, Any]]:
    """The ``count`` newest events, newest first."""
    return [json.loads(raw) for raw in client.lrange(RECENT_KEY, 0, count - 1)]
