"""The HTTP API's request and response models: they validate every request before anything runs,
and the OpenAPI document (``/api/v1/openapi.json``) is generated from them.

Limits: names and filters are short and free of NUL characters (PostgreSQL cannot store one), ids
fit a ``bigint``, ``limit`` is 1–1000, a selection names at most 10,000 ids; the body's size is
capped by ``API_MAX_BODY_BYTES`` and an actor's arguments are checked against its signature
(:mod:`worker_app.arguments`).
"""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    ValidationError,
    WithJsonSchema,
    create_model,
    model_validator,
)

from worker_app.arguments import NO_NUL_SCHEMA, NoNul, location, nul_path
from worker_app.dlq import BIGINT_MAX, DeadLetterFilter
from worker_app.idempotency import HEADER as IDEMPOTENCY_HEADER
from worker_app.idempotency import MAX_KEY_LENGTH, valid_key

MAX_SELECTED_IDS = 10_000


def _iso_time(value: Any) -> Any:
    """An ISO 8601 time, UTC unless it carries an offset (not a number: ``0.5`` is no time)."""
    if isinstance(value, datetime):
        return value
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        raise ValueError(
            f"{str(value)[:40]!r} is not an ISO time (2026-11-23T10:00, UTC unless an offset)"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]*")


def _name(value: str) -> str:
    if not _NAME.fullmatch(value):
        raise ValueError("expected a name: a letter or _ first, then letters, digits, _ . : or -")
    return value


#: An actor, queue or similar identifier.
Name = Annotated[
    str,
    Field(min_length=1, max_length=128, json_schema_extra={"pattern": f"^{_NAME.pattern}$"}),
    AfterValidator(_name),
]
#: A free-text filter (matched as a substring).
SearchText = Annotated[str, Field(min_length=1, max_length=500, json_schema_extra=NO_NUL_SCHEMA), NoNul]
#: A time: ISO 8601, UTC unless it carries an offset.
When = Annotated[datetime, BeforeValidator(_iso_time)]
DeadLetterId = Annotated[int, Field(ge=1, le=BIGINT_MAX)]
JobId = Annotated[str, Field(min_length=1, max_length=64, json_schema_extra=NO_NUL_SCHEMA), NoNul]


def problems(error: ValidationError) -> list[dict[str, str]]:
    """Each problem as ``{loc, msg}`` (``args[0]``, ``limit``; the body itself is ``body``); the
    inputs are not echoed."""
    return [
        {"loc": location(err["loc"]) or "body", "msg": str(err["msg"]).removeprefix("Value error, ")}
        for err in error.errors(include_url=False)
    ]


class Strict(BaseModel):
    """Unknown fields are an error, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


class StrictBody(BaseModel):
    """A JSON body: unknown fields are an error, and no type is coerced (``"all": 0`` is no boolean)."""

    model_config = ConfigDict(extra="forbid", strict=True)


class Error(BaseModel):
    """Every error: ``error`` is one line naming what was wrong; ``detail`` adds to it."""

    error: str
    detail: str | list[dict[str, Any]] | None = None


class JobRequest(StrictBody):
    """``POST /api/v1/jobs``: an allow-listed actor and its arguments (checked against its signature)."""

    model_config = ConfigDict(
        extra="forbid", strict=True,
        json_schema_extra={"examples": [
            {"actor": "send_notification", "args": [42, "Hi <b>there</b>", "manual"], "initiated_by": "ops"},
            {"actor": "broadcast_message", "args": [[1, 2, 3], "Maintenance tonight", "broadcast"]},
        ]},
    )  # fmt: skip

    actor: Name
    args: list[JsonValue] = Field(default_factory=list, max_length=64)
    kwargs: dict[Name, JsonValue] = Field(default_factory=dict, max_length=64)
    initiated_by: (
        Annotated[str, Field(min_length=1, max_length=128, json_schema_extra=NO_NUL_SCHEMA), NoNul] | None
    ) = None

    @model_validator(mode="after")
    def _no_nul_in_arguments(self) -> JobRequest:
        where = nul_path(self.args, "args") or nul_path(self.kwargs, "kwargs")
        if where:
            raise ValueError(f"{where}: must not contain NUL (\\u0000) characters")
        return self


def job_request_for(actors: dict[str, Callable[..., Any]]) -> type[JobRequest]:
    """:class:`JobRequest` whose OpenAPI schema also describes each callable actor's arguments
    (``oneOf`` by ``actor``; validation is unchanged: the actor's signature checks them)."""
    variants = [v for v in (_actor_variant(name, fn) for name, fn in actors.items()) if v is not None]
    described = [v["title"] for v in variants]
    other = {"title": "any other actor (404)", "properties": {"actor": {"not": {"enum": described}}}}
    examples = JobRequest.model_config.get("json_schema_extra", {})

    def extra(schema: dict[str, Any]) -> None:
        schema.update(examples if isinstance(examples, dict) else {})
        if variants:
            schema["oneOf"] = [*variants, other]

    class ActorJobRequest(JobRequest):
        model_config = ConfigDict(extra="forbid", strict=True, title="JobRequest", json_schema_extra=extra)

    return ActorJobRequest


def _schema_of(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema()


def _actor_variant(name: str, fn: Callable[..., Any]) -> dict[str, Any] | None:
    """One actor's request schema: its arguments by position (``args``) or by name (``kwargs``, each
    with its type and constraints); ``None`` when its signature cannot be described inline."""
    signature = inspect.signature(fn)
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if any(p.kind not in positional for p in signature.parameters.values()):
        return None
    hints = typing.get_type_hints(fn, include_extras=True)
    fields: dict[str, Any] = {
        p.name: (hints.get(p.name, Any), ... if p.default is inspect.Parameter.empty else p.default)
        for p in signature.parameters.values()
    }
    by_name = _schema_of(create_model(f"{name}_arguments", **fields))
    if "$defs" in by_name:
        return None
    required = by_name.pop("required", [])
    by_name["description"] = f"by name; required (here or by position in args): {', '.join(required)}"
    return {
        "title": name,
        "properties": {
            "actor": {"const": name},
            "args": {
                "type": "array",
                "maxItems": len(fields),
                "description": f"by position: {', '.join(fields)}",
            },
            "kwargs": by_name,
        },
    }


class JobCreated(BaseModel):
    job_id: str


def _idempotency_key(value: str | None) -> str | None:
    if value is not None and not valid_key(value):
        raise ValueError(f"expected 1 to {MAX_KEY_LENGTH} printable ASCII characters")
    return value


def _absent_by_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)  # an optional header is absent, not null


class IdempotencyHeader(BaseModel):
    """The optional ``Idempotency-Key`` header of the endpoints that create a job
    (:mod:`worker_app.idempotency`); the other headers are not looked at here."""

    idempotency_key: Annotated[
        str | None,
        AfterValidator(_idempotency_key),
        WithJsonSchema({
            "type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH, "pattern": "^[\\x20-\\x7e]+$",
            "description": (
                "a retry with the same key and body within 24 h answers the first request's job_id (with "
                "Idempotent-Replayed: true) and enqueues nothing; the key with another body or endpoint "
                "is a 422, and while the first request is still being enqueued a 409"
            ),
        }),
    ] = Field(default=None, alias=IDEMPOTENCY_HEADER, json_schema_extra=_absent_by_default)  # fmt: skip


class JobAccepted(JobCreated):
    """202 of an endpoint that creates a job: its id; a replay (``Idempotency-Key``) says so."""

    model_config = ConfigDict(  # flask-openapi3 documents the response's headers from openapi_extra
        title="JobCreated",
        openapi_extra={"headers": {  # type: ignore[typeddict-unknown-key]
            "Idempotent-Replayed": {
                "description": "true: the answer of an earlier request with this Idempotency-Key (nothing "
                "was enqueued now)",
                "schema": {"type": "string", "enum": ["true"]},
            },
        }},
    )  # fmt: skip


#: The documented 409 of an endpoint that takes an ``Idempotency-Key`` (an :class:`Error`).
KEY_IN_PROGRESS: dict[str, Any] = {
    "description": "the first request with this Idempotency-Key is still being enqueued: retry later",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    "headers": {
        "Retry-After": {"description": "seconds", "schema": {"type": "string", "pattern": "^[0-9]+$"}}
    },
}


class JobPath(Strict):
    job_id: JobId


# pydantic's mypy plugin gives the generated __init__ a ``**kwargs`` beside the ``kwargs`` field.
class Job(BaseModel):  # type: ignore[no-redef]
    """A tracked job (``worker-app jobs show``)."""

    job_id: str
    actor_name: str
    queue_name: str
    status: str
    args: list[Any] | None = None
    kwargs: dict[str, Any] | None = None
    progress: dict[str, Any] | None = None
    result: Any = None
    error: str | None = None
    attempts: int
    initiated_by: str | None = None
    trace_id: str | None = None
    created_at: str
    started_at: str | None = None
    finished_at: str | None = None


class CancelResult(BaseModel):
    """What a cancel did (``worker-app jobs cancel``)."""

    job_id: str
    outcome: Literal["cancelled", "cancel_requested", "broadcast_cancelled", "nothing_to_cancel", "unknown"]
    status: str | None = Field(description="the job's status afterwards (null: no jobs row)")
    detail: str
    rows_cancelled: int = Field(description="pending notification rows withdrawn")


class DeadLetterFilters(Strict):
    """The dead-letter filters (the CLI's ``--queue``, ``--actor``, ``--error``, ``--since``, ``--until``)
    and ``q``, the dashboard's search."""

    queue: Name | None = None
    actor: Name | None = None
    error: SearchText | None = Field(default=None, description="exception type or message contains this")
    q: SearchText | None = Field(
        default=None,
        description="search: the actor, the exception type or message, or the arguments (args and kwargs "
        "as JSON text) contain this (case-insensitive)",
    )
    since: When | None = Field(default=None, description="dead at or after (ISO time)")
    until: When | None = Field(default=None, description="dead before (ISO time)")

    def where(self, ids: Sequence[int] = (), status: str = "dead") -> DeadLetterFilter:
        """These filters (and ``ids``) as the dead-letter operations take them."""
        return DeadLetterFilter(
            ids=tuple(ids), queue=self.queue, actor=self.actor, error=self.error, q=self.q,
            since=self.since, until=self.until, status=status,
        )  # fmt: skip


class DeadLetterQuery(DeadLetterFilters):
    status: Literal["dead", "replayed", "discarded", "all"] = "dead"
    limit: int = Field(default=50, ge=1, le=1000)


class DeadLetterPath(Strict):
    dead_letter_id: DeadLetterId


def _selection_schema(schema: dict[str, Any]) -> None:
    """Tell clients what the validator asks: at least one of ``ids`` or a filter, or ``"all": true``."""
    given = [
        {"required": [name], "properties": {name: {"not": {"type": "null"}}}}
        for name in ("ids", "queue", "actor", "error", "q", "since", "until")
    ]
    schema["anyOf"] = [*given, {"required": ["all"], "properties": {"all": {"const": True}}}]


class Selection(DeadLetterFilters):
    """Which dead letters to replay or discard: ``ids``, filters, or ``"all": true``."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra=_selection_schema)

    ids: list[DeadLetterId] = Field(default_factory=list, min_length=1, max_length=MAX_SELECTED_IDS)
    all: bool = False

    @model_validator(mode="after")
    def _something_selected(self) -> Selection:
        filters = (self.ids, self.queue, self.actor, self.error, self.q, self.since, self.until)
        if not any(filters) and not self.all:
            raise ValueError('name "ids" or a filter, or pass "all": true')
        return self


class DeadLetter(BaseModel):
    """A dead letter; the listing leaves ``traceback`` out."""

    id: int
    message_id: str
    queue_name: str
    actor_name: str | None
    reason: str
    status: str
    attempts: int
    exception_type: str | None
    exception_message: str | None
    dead_at: str
    traceback: str | None = None


class DeadLetterList(BaseModel):
    total: int
    items: list[DeadLetter]


class AlertQuery(Strict):
    severity: Literal["info", "warning", "error", "critical"] | None = None
    kind: Literal["dead_letter", "unexpected_error", "incident", "report"] | None = None
    limit: int = Field(default=50, ge=1, le=1000)


class AlertItem(BaseModel):
    fingerprint: str = Field(
        description="<kind>:<hash of actor, error type, normalised message> or incident:<key>"
    )
    kind: str
    severity: str
    title: str
    text: str = Field(description="the latest occurrence's message")
    count: int = Field(description="occurrences since first_at (de-duplicated ones included)")
    messages: int = Field(description="alert windows opened: first messages sent (summaries not counted)")
    first_at: float = Field(description="epoch seconds")
    last_at: float = Field(description="epoch seconds")


class AlertList(BaseModel):
    items: list[AlertItem]


class OpenAlertQuery(Strict):
    severity: Literal["info", "warning", "error", "critical"] | None = None


class OpenAlertItem(BaseModel):
    key: str = Field(
        description="the condition: anomaly.<rule>[.<subject>], monitoring.node_offline.<uuid>, ..."
    )
    severity: str
    title: str
    first_seen: float = Field(description="epoch seconds: when it opened")
    last_seen: float = Field(description="epoch seconds: when a run last found it still true")
    source: str = Field(description="the job that opened it")


class OpenAlertList(BaseModel):
    items: list[OpenAlertItem]


class ReplayResult(BaseModel):
    matched: int
    replayed: int
    messages: dict[str, str] = Field(description="dead letter id → the new message id")
    skipped: dict[str, str] = Field(description="dead letter id → why it was not replayed")


class DiscardResult(BaseModel):
    discarded: int


class QueueDepth(BaseModel):
    queue: str
    ready: int
    unacked: int | None
    delayed: int
    dead: int = Field(description="messages in the queue's .XQ")
    dead_letters: int | None = Field(description="open dead letters (recorded, status dead)")
    consumers: int
    queue_type: str | None = Field(default=None, description="classic or quorum (management API only)")
    leader: str | None = Field(default=None, description="the quorum queue's leader (a classic queue's node)")
    members: list[str] | None = Field(default=None, description="a quorum queue's member nodes")
    online: list[str] | None = Field(default=None, description="its members that are up")


class QueuePause(BaseModel):
    queue: str
    paused_at: str = Field(description="ISO 8601, UTC")
    paused_by: str
    reason: str | None


class QueueReport(BaseModel):
    source: Literal["management", "amqp"]
    note: str | None
    queues: list[QueueDepth]
    paused: list[QueuePause] | None = Field(default=None, description="paused queues; null: PostgreSQL down")


class QueuePath(Strict):
    queue: Annotated[str, Field(min_length=1, max_length=64, json_schema_extra=NO_NUL_SCHEMA), NoNul]


class PauseRequest(StrictBody):
    """Why (optional), shown by ``worker-app queues`` and the dashboard."""

    reason: (
        Annotated[str, Field(min_length=1, max_length=500, json_schema_extra=NO_NUL_SCHEMA), NoNul] | None
    ) = None


class PauseResult(BaseModel):
    queue: str
    paused: bool = Field(description="the queue's state now")
    changed: bool = Field(description="false when it was in that state already")


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    ready: bool
    checks: dict[str, str] = Field(description="postgresql, redis, rabbitmq: ok or the error's type")
