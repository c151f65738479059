"""The notifications domain's routes on ``worker-app serve`` (registered with
:func:`worker_app.domains.register_web`): scheduled broadcasts.

* ``GET /api/v1/broadcasts?state=&limit=`` — broadcasts by state (``scheduled``, ``sending``,
  ``done``, ``cancelled``), the latest start first, with their totals;
* ``POST /api/v1/broadcasts/<id>/send-now`` — a scheduled broadcast starts now (409 when it is not
  scheduled any more, 404 unknown).

A broadcast is scheduled with ``broadcast_message``'s ``scheduled_at`` (``POST /api/v1/jobs``) and
cancelled with ``POST /api/v1/jobs/<id>/cancel``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import dramatiq
from flask import Response, jsonify
from flask_openapi3.openapi import OpenAPI
from pydantic import BaseModel, Field

from actors.notifications.scheduled import get_broadcast_row, list_broadcasts, send_now
from worker_app.runtime import Runtime
from worker_app.web.api import BEARER, ApiError, statuses
from worker_app.web.models import JobId, Strict


class BroadcastQuery(Strict):
    state: Literal["scheduled", "sending", "done", "cancelled"] | None = None
    limit: Annotated[int, Field(ge=1, le=1000)] = 50


class BroadcastPath(Strict):
    broadcast_id: JobId


class Broadcast(BaseModel):
    broadcast_id: str
    state: Literal["scheduled", "sending", "done", "cancelled"]
    type: str
    total: int
    sent: int | None = Field(description="written once every row is settled")
    failed: int | None = Field(description="written once every row is settled (cancelled rows not included)")
    cancelled: int
    scheduled_at: str | None = Field(description="when it starts sending (null: it went at once)")
    created_at: str
    settled_at: str | None


class BroadcastList(BaseModel):
    items: list[Broadcast]


class SendNow(BaseModel):
    broadcast_id: str
    rows_due: int = Field(description="rows that became due now")


def add_routes(app: OpenAPI, runtime: Runtime, broker: dramatiq.Broker) -> None:
    @app.get("/api/v1/broadcasts", responses=statuses(200, BroadcastList, 401, 422), security=BEARER)
    def broadcasts(query: BroadcastQuery) -> Response:
        """Broadcasts by state, the latest start (or creation) first, with their totals."""
        rows = list_broadcasts(runtime.database, query.state, query.limit)
        return jsonify(items=[row.as_dict() for row in rows])

    @app.post(
        "/api/v1/broadcasts/<broadcast_id>/send-now", responses=statuses(200, SendNow, 401, 404, 409, 422),
        security=BEARER,
    )  # fmt: skip
    def broadcast_send_now(path: BroadcastPath) -> Any:
        """Start a scheduled broadcast now instead of at its time."""
        moved = send_now(runtime.database, path.broadcast_id)
        if moved is None:
            row = get_broadcast_row(runtime.database, path.broadcast_id)
            if row is None:
                raise ApiError(404, f"no broadcast with id {path.broadcast_id!r}")
            raise ApiError(409, f"broadcast {path.broadcast_id!r} is {row.state}, not scheduled")
        return jsonify(broadcast_id=path.broadcast_id, rows_due=moved)
