"""The bulk domain's endpoints: one route per bulk actor, its body the actor's own arguments.

* ``POST /api/v1/bulk/users`` ``{operation, user_ids, params?, initiated_by?}`` —
  ``execute_bulk_user_operation``;
* ``POST /api/v1/bulk/broadcast`` ``{telegram_ids: [...] | "all", message, notification_type,
  parse_mode?, initiated_by?}`` — ``execute_bulk_broadcast``;
* ``POST /api/v1/exports`` ``{export_type, date_range?, format?, initiated_by?}`` —
  ``generate_data_export``.

Each answers 202 ``{job_id}`` once the job is recorded and its message published; status, progress
and result come from ``GET /api/v1/jobs/<id>`` (and ``/cancel``), live counts from the events
stream. The body model is built from the actor's signature (so the OpenAPI document shows each
argument with its type and constraints), and the actor's own checks run before anything is
enqueued (422 naming the argument). ``initiated_by`` (else the ``X-Initiated-By`` header, else
``api``) is the job's; an actor that takes ``initiated_by`` itself gets it too. A route whose actor
is not loaded in this process is not registered. An ``Idempotency-Key`` header makes a request
once-only, as on ``POST /api/v1/jobs`` (:func:`worker_app.web.api.accept_job`).
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from typing import Annotated, Any

import dramatiq
from flask import Response, request
from flask_openapi3.openapi import OpenAPI
from pydantic import Field, create_model, model_validator

from worker_app import jobs as tracking
from worker_app.arguments import NO_NUL_SCHEMA, NoNul, nul_path
from worker_app.runtime import Runtime
from worker_app.web import models as m

ROUTES = (
    ("/api/v1/bulk/users", "execute_bulk_user_operation", "Apply one operation to many panel users."),
    (
        "/api/v1/bulk/broadcast",
        "execute_bulk_broadcast",
        "Send one message to a list of chats or to all users.",
    ),
    ("/api/v1/exports", "generate_data_export", "Export users, payments, servers or audit logs to a file."),
)


class ActorBody(m.StrictBody):
    """An actor's arguments as a JSON body: no NUL character anywhere (PostgreSQL's ``jsonb`` of the
    job row cannot store one), as ``POST /api/v1/jobs`` checks too."""

    @model_validator(mode="after")
    def _no_nul(self) -> ActorBody:
        where = nul_path(self.model_dump(mode="json"))
        if where:
            raise ValueError(f"{where.lstrip('.')}: must not contain NUL (\\u0000) characters")
        return self


InitiatedBy = Annotated[str, Field(min_length=1, max_length=128, json_schema_extra=NO_NUL_SCHEMA), NoNul]


def body_model(name: str, fn: Callable[..., Any]) -> type[m.StrictBody]:
    """A strict body model with the actor's parameters (and ``initiated_by``) as its fields."""
    hints = typing.get_type_hints(fn, include_extras=True)
    fields: dict[str, Any] = {
        p.name: (hints.get(p.name, Any), ... if p.default is inspect.Parameter.empty else p.default)
        for p in inspect.signature(fn).parameters.values()
    }
    fields["initiated_by"] = (InitiatedBy | None, None)  # the job's, checked as /api/v1/jobs does
    title = "".join(part.title() for part in name.split("_")) + "Request"
    model: type[m.StrictBody] = create_model(title, __base__=ActorBody, **fields)
    return model


def add_bulk_routes(app: OpenAPI, runtime: Runtime, broker: dramatiq.Broker) -> None:
    """Register the routes whose actor is loaded; each behaves as ``POST /api/v1/jobs`` does."""
    for path, name, summary in ROUTES:
        if name in broker.actors:
            _route(app, runtime, broker.get_actor(name), path, summary)


def _route(app: OpenAPI, runtime: Runtime, actor: dramatiq.Actor[..., Any], path: str, summary: str) -> None:
    from worker_app.web.api import BEARER, accept_job, check_arguments, job_statuses, request_header

    takes_initiator = "initiated_by" in inspect.signature(actor.fn).parameters

    def create(body: Any, header: m.IdempotencyHeader) -> tuple[Response, int]:
        kwargs = dict(request.get_json())
        initiated_by = kwargs.get("initiated_by") or request_header("X-Initiated-By", 128) or "api"
        if takes_initiator:
            kwargs["initiated_by"] = initiated_by
        else:
            kwargs.pop("initiated_by", None)
        check_arguments(actor, [], kwargs)
        trace_id = request_header("X-Request-ID", 64)
        return accept_job(runtime, header, lambda: tracking.enqueue_job(
            runtime.database, actor, (), kwargs, initiated_by=initiated_by, trace_id=trace_id,
        ).message_id)  # fmt: skip

    create.__name__ = f"create_{actor.actor_name}"
    create.__doc__ = summary
    create.__annotations__["body"] = body_model(actor.actor_name, actor.fn)
    app.post(path, responses=job_statuses(), security=BEARER)(create)
