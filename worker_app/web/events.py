"""``GET /api/v1/events``: the platform's live events (:mod:`worker_app.events`) as Server-Sent Events.

Each event on the Redis channel ``cybervpn:events`` is relayed as it arrives::

    event: node_status
    data: {"type":"node_status","node":"<uuid>","name":"de-1","old":"online","new":"offline","at":...}

(``event:`` is the JSON's ``type``, so an ``EventSource`` can ``addEventListener("node_status",
...)``). The stream opens with ``retry: 3000`` and a ``: connected`` comment, and sends a
``: keepalive`` comment after ``API_EVENTS_KEEPALIVE_S`` seconds of silence (proxies keep the connection; a
client that left is noticed). Redis failing mid-stream ends it with ``event: error``; the client
reconnects after ``retry``. Pub/sub keeps nothing for a client that is not connected: after a
reconnect, read the state again (``/api/v1/alerts/open``, the ``cybervpn:health:*`` keys).

Authentication: ``Authorization: Bearer <API_TOKEN>`` (a fetch-based SSE client), or the session of
a dashboard login (the browser's ``EventSource``, which cannot send headers); else 401. A token in
the URL is not accepted (it would end up in access logs). At most ``API_EVENTS_MAX_CLIENTS`` streams
per process (each holds a thread): beyond it 503. Not in the OpenAPI document, which cannot describe
a stream (and whose fuzzing would wait on it forever).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import redis
from flask import Flask, Response

from worker_app.events import EVENTS_CHANNEL
from worker_app.runtime import Runtime

PATH = "/api/v1/events"
log = logging.getLogger(__name__)


def add_events_route(app: Flask, runtime: Runtime) -> None:
    """Register the stream on ``app``."""
    limit = runtime.settings.api_events_max_clients
    slots = threading.BoundedSemaphore(limit)

    def events() -> Response:
        from worker_app.web.api import ApiError

        if not slots.acquire(blocking=False):
            raise ApiError(503, f"too many event streams open (API_EVENTS_MAX_CLIENTS={limit})")
        try:
            pubsub = runtime.redis.pubsub(ignore_subscribe_messages=True)
            pubsub.subscribe(EVENTS_CHANNEL)  # Redis down: raised here, answered 503 naming Redis
        except BaseException:
            slots.release()
            raise
        keepalive_s = runtime.settings.api_events_keepalive_s
        response = Response(_stream(pubsub, slots, keepalive_s), mimetype="text/event-stream")
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
        return response

    app.add_url_rule(PATH, "events", events, methods=["GET"])


def _stream(pubsub: Any, slots: threading.BoundedSemaphore, keepalive_s: float) -> Iterator[str]:
    try:
        yield "retry: 3000\n: connected\n\n"
        quiet_since = time.monotonic()
        while True:
            try:
                message = pubsub.get_message(timeout=min(1.0, keepalive_s))
            except redis.RedisError as e:
                log.warning("event stream ended: Redis unavailable (%s)", e)
                yield f"event: error\ndata: {json.dumps({'error': 'Redis unavailable; reconnect'})}\n\n"
                return
            if message is not None and message.get("type") == "message":
                yield _frame(message["data"])
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= keepalive_s:
                yield ": keepalive\n\n"
                quiet_since = time.monotonic()
    finally:  # the client left (a write failed) or the server stops
        try:
            pubsub.close()
        finally:
            slots.release()


def _frame(data: str | bytes) -> str:
    text = data.decode() if isinstance(data, bytes) else data
    try:
        kind = str(json.loads(text).get("type", "message"))
    except (ValueError, AttributeError):
        kind = "message"
    body = "\n".join(f"data: {line}" for line in text.splitlines() or [""])
    return f"event: {kind}\n{body}\n\n"
