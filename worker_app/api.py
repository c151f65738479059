"""The producer and operator HTTP API (Flask): ``worker-app serve``.

* ``POST /api/v1/jobs`` ``{actor, args, kwargs}`` — an allow-listed actor (``API_ACTORS``) → 202
  ``{job_id}``; arguments are checked against the actor's signature and type hints first (422 with
  the reason), an actor not allowed or not defined → 404. Nothing is enqueued on any error.
* ``GET /api/v1/jobs/<id>``, ``GET /api/v1/queues``, ``GET /api/v1/dead-letters`` (the CLI's
  filters as query parameters), ``GET /api/v1/dead-letters/<id>``, ``POST
  /api/v1/dead-letters/replay`` and ``/discard`` (``{ids}`` or filters, or ``{"all": true}``).
* ``GET /healthz`` (the process answers), ``GET /readyz`` (PostgreSQL, Redis and RabbitMQ answer),
  ``GET /api/v1/openapi.json`` — no token needed.

Every other route needs ``Authorization: Bearer <API_TOKEN>``. Without ``API_TOKEN`` the server
refuses to start unless it binds to a loopback address (then no token is asked). Every error is
JSON ``{"error": "<one line>"}``.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast

import dramatiq
from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from worker_app import dlq as dead_letters
from worker_app import jobs as tracking
from worker_app.arguments import mismatch
from worker_app.errors import ConfigurationError
from worker_app.runtime import Runtime

F = TypeVar("F", bound=Callable[..., Any])


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_arguments(actor: dramatiq.Actor[..., Any], args: list[Any], kwargs: dict[str, Any]) -> None:
    """Raise :class:`ApiError` 422 unless ``args``/``kwargs`` fit the actor's signature and types."""
    reason = mismatch(actor.actor_name, actor.fn, args, kwargs, strict=True)
    if reason is not None:
        raise ApiError(422, reason)


def _filter_from(data: dict[str, Any]) -> dead_letters.DeadLetterFilter:
    try:
        return dead_letters.filter_from(data)
    except ValueError as e:
        raise ApiError(400, str(e)) from None


class _Authorized:
    """A view decorator asking for ``Authorization: Bearer <token>`` (nothing when no token is set)."""

    def __init__(self, token: str | None) -> None:
        self.token = token

    def __call__(self, view: F) -> F:
        token = self.token

        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if token is not None:
                given = request.headers.get("Authorization", "")
                if not given.startswith("Bearer ") or not hmac.compare_digest(
                    given[7:].encode(), token.encode()
                ):
                    raise ApiError(401, "missing or wrong bearer token (Authorization: Bearer <API_TOKEN>)")
            return view(*args, **kwargs)

        return cast(F, wrapper)


def _body() -> dict[str, Any]:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise ApiError(400, "expected a JSON object body")
    return data


def create_app(runtime: Runtime, broker: dramatiq.Broker) -> Flask:
    """The API application over ``runtime`` (database, Redis, settings) and ``broker``."""
    settings = runtime.settings
    app = Flask("cybervpn-worker-api")
    authorized = _Authorized(settings.api_token.get_secret_value() if settings.api_token else None)

    @app.errorhandler(ApiError)
    def api_error(e: ApiError) -> tuple[Response, int]:
        return jsonify(error=str(e)), e.status

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException) -> tuple[Response, int]:
        custom = e.description if e.description != type(e).description else None
        return jsonify(error=f"{e.code} {e.name}" + (f": {custom}" if custom else "")), e.code or 500

    _health_routes(app, runtime, broker)
    _job_routes(app, runtime, broker, authorized)
    _dead_letter_routes(app, runtime, broker, authorized)
    from worker_app.dashboard import create_dashboard

    create_dashboard(app, runtime, broker)
    return app


def _health_routes(app: Flask, runtime: Runtime, broker: dramatiq.Broker) -> None:
    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify(status="ok")

    @app.get("/readyz")
    def readyz() -> tuple[Response, int]:
        probes: dict[str, Any] = {
            "postgresql": lambda: runtime.database.engine.connect().close(),
            "redis": runtime.redis.ping,
            "rabbitmq": lambda: broker.declare_queue("monitoring", ensure=True),  # type: ignore[call-arg]
        }
        checks: dict[str, str] = {}
        for name, probe in probes.items():
            try:
                probe()
                checks[name] = "ok"
            except Exception as e:
                checks[name] = type(e).__name__
        ready = all(v == "ok" for v in checks.values())
        return jsonify(ready=ready, checks=checks), 200 if ready else 503

    @app.get("/api/v1/openapi.json")
    def openapi() -> Response:
        return jsonify(openapi_document(runtime.settings.api_actors))


def _job_routes(app: Flask, runtime: Runtime, broker: dramatiq.Broker, authorized: _Authorized) -> None:
    settings = runtime.settings

    def callable_actors() -> list[str]:
        return [a for a in settings.api_actors if a in broker.actors]

    @app.post("/api/v1/jobs")
    @authorized
    def create_job() -> tuple[Response, int]:
        data = _body()
        name, args, kwargs = data.get("actor"), data.get("args", []), data.get("kwargs", {})
        if not isinstance(name, str) or not name:
            raise ApiError(400, "actor: expected the actor's name")
        if not isinstance(args, list) or not isinstance(kwargs, dict):
            raise ApiError(400, "args must be a JSON array and kwargs a JSON object")
        if name not in settings.api_actors or name not in broker.actors:
            raise ApiError(404, f"unknown actor {name!r} (callable: {', '.join(callable_actors())})")
        actor = broker.get_actor(name)
        check_arguments(actor, args, kwargs)
        initiated_by = str(data.get("initiated_by") or request.headers.get("X-Initiated-By") or "api")[:128]
        message = tracking.enqueue_job(
            runtime.database, actor, args, kwargs, initiated_by=initiated_by,
            trace_id=request.headers.get("X-Request-ID") or None,
        )  # fmt: skip
        return jsonify(job_id=message.message_id), 202

    @app.get("/api/v1/jobs/<job_id>")
    @authorized
    def get_job(job_id: str) -> Response:
        job = tracking.get_job(runtime.database, job_id)
        if job is None:
            raise ApiError(404, f"no job with id {job_id!r}")
        return jsonify(tracking.as_dict(job))

    @app.get("/api/v1/queues")
    @authorized
    def queues() -> Response:
        from worker_app.queues import queue_report

        return jsonify(queue_report(settings).as_dict())


def _dead_letter_routes(
    app: Flask, runtime: Runtime, broker: dramatiq.Broker, authorized: _Authorized
) -> None:
    database = runtime.database

    @app.get("/api/v1/dead-letters")
    @authorized
    def list_dead() -> Response:
        where = _filter_from({**request.args.to_dict(), "ids": None})
        try:
            limit = min(int(request.args.get("limit", 50)), 1000)
        except ValueError:
            raise ApiError(400, "limit: expected a number") from None
        rows = dead_letters.listing(database, where, limit)
        return jsonify(
            total=dead_letters.count(database, where),
            items=[dead_letters.as_dict(r, with_traceback=False) for r in rows],
        )

    @app.get("/api/v1/dead-letters/<int:dead_letter_id>")
    @authorized
    def show_dead(dead_letter_id: int) -> Response:
        found = dead_letters.listing(
            database, dead_letters.DeadLetterFilter(ids=(dead_letter_id,), status="all"), 1
        )
        if not found:
            raise ApiError(404, f"no dead letter with id {dead_letter_id}")
        return jsonify(dead_letters.as_dict(found[0]))

    def selection() -> dead_letters.DeadLetterFilter:
        data = _body()
        where = _filter_from(data)
        if where.is_empty() and data.get("all") is not True:
            raise ApiError(400, 'name "ids" or a filter, or pass "all": true')
        return where

    @app.post("/api/v1/dead-letters/replay")
    @authorized
    def replay() -> Response:
        report = dead_letters.replay(database, broker, selection())
        return jsonify(
            matched=report.matched, replayed=report.replayed,
            messages={str(k): v for k, v in report.messages.items()},
            skipped={str(k): v for k, v in report.skipped.items()},
        )  # fmt: skip

    @app.post("/api/v1/dead-letters/discard")
    @authorized
    def discard() -> Response:
        return jsonify(discarded=dead_letters.discard(database, selection()))


def openapi_document(actors: list[str]) -> dict[str, Any]:
    """The OpenAPI 3.0 description of this API."""
    error = {"$ref": "#/components/schemas/Error"}
    json_error = {"content": {"application/json": {"schema": error}}}

    def path_param(name: str, kind: str) -> dict[str, Any]:
        return {"name": name, "in": "path", "required": True, "schema": {"type": kind}}

    def ok(description: str) -> dict[str, Any]:
        return {"description": description, "content": {"application/json": {"schema": {"type": "object"}}}}

    filters = [
        {"name": n, "in": "query", "required": False, "schema": {"type": "string"}, "description": d}
        for n, d in (
            ("queue", "queue name"), ("actor", "actor name"), ("error", "exception type or message contains"),
            ("since", "ISO time"), ("until", "ISO time"), ("status", "dead | replayed | discarded | all"),
            ("limit", "at most this many (default 50, max 1000)"),
        )
    ]  # fmt: skip
    selection = {
        "type": "object",
        "properties": {
            "ids": {"type": "array", "items": {"type": "integer"}}, "queue": {"type": "string"},
            "actor": {"type": "string"}, "error": {"type": "string"}, "since": {"type": "string"},
            "until": {"type": "string"}, "all": {"type": "boolean"},
        },
    }  # fmt: skip
    return {
        "openapi": "3.0.3",
        "info": {"title": "CyberVPN Task Worker API", "version": "1"},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": {"type": "object", "properties": {"error": {"type": "string"}}}},
        },
        "security": [{"bearer": []}],
        "paths": {
            "/api/v1/jobs": {"post": {
                "summary": "Enqueue an allow-listed actor as a tracked job",
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["actor"],
                    "properties": {"actor": {"type": "string", "enum": actors}, "args": {"type": "array"},
                                   "kwargs": {"type": "object"}, "initiated_by": {"type": "string"}},
                }}}},
                "responses": {"202": ok("{job_id}"), "400": json_error, "401": json_error,
                              "404": json_error, "422": json_error},
            }},
            "/api/v1/jobs/{job_id}": {"get": {
                "summary": "A job's status, progress, result or error",
                "parameters": [path_param("job_id", "string")],
                "responses": {"200": ok("the job"), "401": json_error, "404": json_error},
            }},
            "/api/v1/queues": {"get": {"summary": "Queue depths", "responses": {"200": ok("depths")}}},
            "/api/v1/dead-letters": {"get": {
                "summary": "Dead letters matching the filters", "parameters": filters,
                "responses": {"200": ok("{total, items}"), "400": json_error, "401": json_error},
            }},
            "/api/v1/dead-letters/{id}": {"get": {
                "summary": "One dead letter with its traceback",
                "parameters": [path_param("id", "integer")],
                "responses": {"200": ok("the dead letter"), "401": json_error, "404": json_error},
            }},
            "/api/v1/dead-letters/replay": {"post": {
                "summary": "Replay matching dead letters (crash-safe)",
                "requestBody": {"content": {"application/json": {"schema": selection}}},
                "responses": {"200": ok("{matched, replayed, messages, skipped}"), "400": json_error},
            }},
            "/api/v1/dead-letters/discard": {"post": {
                "summary": "Discard matching dead letters",
                "requestBody": {"content": {"application/json": {"schema": selection}}},
                "responses": {"200": ok("{discarded}"), "400": json_error},
            }},
            "/healthz": {"get": {"summary": "Liveness", "security": [], "responses": {"200": ok("ok")}}},
            "/readyz": {"get": {"summary": "PostgreSQL, Redis and RabbitMQ answer", "security": [],
                                "responses": {"200": ok("ready"), "503": ok("not ready")}}},
        },
    }  # fmt: skip


def check_serving(host: str, token_set: bool) -> None:
    """Refuse an unauthenticated API on anything but loopback."""
    if not token_set and not is_loopback(host):
        raise ConfigurationError(
            f"API_TOKEN is not set: the API serves without a token only on loopback, not on {host!r}"
        )
