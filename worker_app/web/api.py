"""The producer and operator HTTP API (Flask + flask-openapi3): ``worker-app serve``.

* ``POST /api/v1/jobs`` ``{actor, args, kwargs, initiated_by}`` — an allow-listed actor
  (``API_ACTORS``) → 202 ``{job_id}``; the arguments are checked against the actor's signature, its
  annotated constraints and its declared checks first (422 naming the argument). An actor not
  allowed or not defined → 404. Nothing is enqueued on any error.
* ``Idempotency-Key`` (optional, on every route that creates a job, :func:`accept_job`): a retry
  with the key and the same body within 24 h answers the first job's id with ``Idempotent-Replayed:
  true`` and enqueues nothing; the key with another body or route → 422; the first request still
  being enqueued → 409 with ``Retry-After`` (:mod:`worker_app.idempotency`).
* ``GET /api/v1/alerts`` (``severity``, ``kind``, ``limit``): recent alerts with their counts;
  ``GET /api/v1/alerts/open`` (``severity``): the open alerts.
* ``GET /api/v1/events``: live events (Server-Sent Events, :mod:`worker_app.web.events`).
* ``POST /webhooks/cryptobot``: Crypto Pay's webhook, authenticated by its signature
  (:mod:`worker_app.web.webhooks`).
* ``GET /api/v1/jobs/<id>``, ``GET /api/v1/queues``, ``GET /api/v1/dead-letters`` (the CLI's
  filters as query parameters, and ``q``: a search of actor, error and arguments), ``GET
  /api/v1/dead-letters/<id>``, ``POST /api/v1/dead-letters/replay`` and ``/discard`` (``{ids}`` or
  filters, ``q`` too, or ``{"all": true}``).
* ``POST /api/v1/bulk/users``, ``/api/v1/bulk/broadcast``, ``/api/v1/exports``: the bulk domain's
  jobs, their bodies the actors' arguments (:mod:`worker_app.web.bulk`) → 202 ``{job_id}``.
* ``GET /exports/<job_id>?expires=&sig=``: an export's file behind a signed, expiring link
  (:mod:`worker_app.web.downloads`; no bearer token).
* ``GET /healthz`` (the process answers), ``GET /readyz`` (PostgreSQL, Redis and RabbitMQ answered
  this process's last background check: pod-local, no round trip per probe), ``GET /metrics``
  (this process's Prometheus metrics),
  ``GET /api/v1/openapi.json`` (generated from :mod:`worker_app.web.models`) — no token needed.

Every other ``/api/`` route needs ``Authorization: Bearer <API_TOKEN>`` (``/api/v1/events`` also takes
a dashboard login's session). Without ``API_TOKEN`` the
server refuses to start unless it binds to a loopback address (then no token is asked). Every
request is validated by its pydantic model before anything runs. Every error is JSON ``{"error":
"<one line>", "detail": ...}``: 401 token, 404 unknown, 409 a conflict (a cancel too late, an
``Idempotency-Key`` in progress), 413 body over ``API_MAX_BODY_BYTES``, 422 invalid (``detail`` lists
each problem), 503 a dependency is unreachable (``error`` names it).
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections.abc import Callable
from typing import Any

import dramatiq
from flask import Flask, Response, jsonify, request, session
from flask.json.provider import DefaultJSONProvider
from flask_openapi3.models.info import Info
from flask_openapi3.openapi import OpenAPI
from flask_openapi3.types import ResponseDict
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import HTTPException

from worker_app import dlq as dead_letters
from worker_app import idempotency, pauses
from worker_app import jobs as tracking
from worker_app.arguments import mismatch
from worker_app.errors import ConfigurationError
from worker_app.health import DependencyChecker, Health, ping_database
from worker_app.outages import outage_of
from worker_app.publishing import check_connection
from worker_app.runtime import Runtime
from worker_app.web import models as m
from worker_app.web.events import PATH as EVENTS_PATH

log = logging.getLogger(__name__)
BEARER: list[dict[str, list[Any]]] = [{"bearer": []}]
#: Paths that answer JSON errors (the rest is the dashboard, which answers HTML pages).
#: How long the first ``/readyz`` waits for the first round of checks (later ones answer at once).
FIRST_CHECK_WAIT_S = 5.0
JSON_PATHS = ("/api/", "/webhooks/", "/exports/", "/healthz", "/readyz", "/metrics")


class ApiError(Exception):
    def __init__(self, status: int, message: str, detail: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail


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


def statuses(ok: int, model: type[BaseModel], *errors: int) -> ResponseDict:
    """A route's documented answers: ``ok`` with ``model``, each of ``errors`` and 503 as errors."""
    return {ok: model, **{status: m.Error for status in (*errors, 503)}}


def validation_error(e: ValidationError) -> Response:
    """422 ``{"error": "<where>: <what>", "detail": [{"loc", "msg"}, ...]}`` (inputs are not echoed)."""
    problems = m.problems(e)
    in_body = {err["loc"][0] if err["loc"] else "body" for err in e.errors()} - {
        *(request.view_args or {}),
        idempotency.HEADER,
    }
    if request.method == "POST" and in_body and request.get_json(silent=True) is None:
        first = "body: expected a JSON object (Content-Type: application/json)"
    else:
        first = f"{problems[0]['loc']}: {problems[0]['msg']}"
        if len(problems) > 1:
            first += f" (and {len(problems) - 1} more)"
    response = jsonify(error=first, detail=problems)
    response.status_code = 422
    return response


class _JsonProvider(DefaultJSONProvider):
    """Flask's JSON, with a body nested too deeply to parse (``[[[[…``) refused like any body that
    is not JSON, instead of a ``RecursionError`` (500)."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        try:
            return super().loads(s, **kwargs)
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None


def create_app(runtime: Runtime, broker: dramatiq.Broker) -> Flask:
    """The API application over ``runtime`` (database, Redis, settings) and ``broker``."""
    settings = runtime.settings
    app = OpenAPI(
        "cybervpn-worker-api",
        info=Info(title="CyberVPN Task Worker API", version="1"),
        security_schemes={"bearer": {"type": "http", "scheme": "bearer"}},
        validation_error_status=422,
        validation_error_model=m.Error,
        validation_error_callback=validation_error,
        doc_ui=False,
    )
    app.json = _JsonProvider(app)
    app.config["MAX_CONTENT_LENGTH"] = settings.api_max_body_bytes
    _guard(app, settings.api_token.get_secret_value() if settings.api_token else None)
    _error_handlers(app)
    _health_routes(app, runtime, broker)
    _job_routes(app, runtime, broker)
    _queue_routes(app, runtime)
    _dead_letter_routes(app, runtime, broker)
    from worker_app.web.bulk import add_bulk_routes

    add_bulk_routes(app, runtime, broker)
    from worker_app.web.telegram_webhook import add_telegram_webhook_route
    from worker_app.web.telemetry import add_telemetry_routes

    add_telemetry_routes(app, runtime)
    add_telegram_webhook_route(app, runtime, broker)
    from worker_app.web.dashboard import create_dashboard
    from worker_app.web.downloads import add_download_route
    from worker_app.web.events import add_events_route
    from worker_app.web.webhooks import add_webhook_routes

    add_events_route(app, runtime)
    add_webhook_routes(app, runtime, broker)
    add_download_route(app, runtime)

    from worker_app.domains import web_extensions

    for add_routes in web_extensions():  # the domains' own routes (register_web)
        add_routes(app, runtime, broker)
    create_dashboard(app, runtime, broker)
    return app


def _guard(app: Flask, token: str | None) -> None:
    """``Authorization: Bearer <token>`` on every ``/api/`` route but the OpenAPI document."""

    @app.before_request
    def authorize() -> None:
        if token is None or not request.path.startswith("/api/") or request.path == "/api/v1/openapi.json":
            return
        if request.path == EVENTS_PATH and session.get("auth"):
            return  # a browser's EventSource sends the dashboard's session cookie, never a header
        given = request.headers.get("Authorization", "")
        if not given.startswith("Bearer ") or not hmac.compare_digest(given[7:].encode(), token.encode()):
            raise ApiError(401, "missing or wrong bearer token (Authorization: Bearer <API_TOKEN>)")


def _error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def api_error(e: ApiError) -> tuple[Response | str, int]:
        return _error(e.status, str(e), e.detail)

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException) -> tuple[Response | str, int]:
        custom = e.description if e.description != type(e).description else None
        detail = None
        if e.code == 413:
            detail = (
                f"a request body may be at most {app.config['MAX_CONTENT_LENGTH']} bytes (API_MAX_BODY_BYTES)"
            )
        body, status = _error(e.code or 500, f"{e.code} {e.name}" + (f": {custom}" if custom else ""), detail)
        allowed = getattr(e, "valid_methods", None)  # 405 names the methods the path has
        if allowed and isinstance(body, Response):
            body.headers["Allow"] = ", ".join(allowed)
        return body, status

    @app.errorhandler(Exception)
    def unexpected(e: Exception) -> tuple[Response | str, int]:
        outage = outage_of(e)
        if outage is not None:
            log.warning("%s %s: %s", request.method, request.path, outage.line())
            return _error(503, f"{outage.dependency} is unavailable", outage.reason)
        log.exception("%s %s failed", request.method, request.path)
        return _error(500, "internal error", f"{type(e).__name__}; the server's log has the traceback")


def _error(status: int, error: str, detail: Any = None) -> tuple[Response | str, int]:
    """JSON for the API, a readable page for the dashboard."""
    if request.path.startswith(JSON_PATHS):
        response = jsonify(error=error, detail=detail)
        if status == 503:
            response.headers["Retry-After"] = "5"
        return response, status
    from worker_app.web.dashboard import render_error

    return render_error(status, error, detail if isinstance(detail, str) else None)


def _health_routes(app: OpenAPI, runtime: Runtime, broker: dramatiq.Broker) -> None:
    @app.get("/healthz", responses={200: m.Health}, security=[])
    def healthz() -> Response:
        """Liveness: the process answers."""
        return jsonify(status="ok")

    health = Health()
    checker = DependencyChecker(health, {
        "postgresql": lambda: ping_database(runtime.database),
        "redis": runtime.redis.ping,
        "rabbitmq": lambda: _on_publisher(broker, lambda: check_connection(broker)),
    }, name="serve-health")  # fmt: skip
    app.extensions["health"] = checker  # `worker-app serve` starts it; else the first /readyz does

    @app.get("/readyz", responses={200: m.Readiness, 503: m.Readiness}, security=[])
    def readyz() -> tuple[Response, int]:
        """Readiness, from this process's own checks (every 2 s, in the background): PostgreSQL, Redis
        and RabbitMQ answered the last one."""
        checker.start()
        checker.first_round.wait(FIRST_CHECK_WAIT_S)
        checks = health.readiness()
        ready = bool(checks) and all(v == "ok" for v in checks.values())
        return jsonify(ready=ready, checks=checks), 200 if ready else 503

    @app.get("/metrics", doc_ui=False)
    def metrics() -> Response:
        """This process's Prometheus metrics (webhooks, publishes, …); no token, as Prometheus scrapes."""
        from worker_app.middleware.metrics import exposition

        body, content_type = exposition()
        return Response(body, content_type=content_type)

    @app.get("/api/v1/openapi.json", doc_ui=False)
    def openapi() -> Response:
        return jsonify(app.api_doc)


def _job_routes(app: OpenAPI, runtime: Runtime, broker: dramatiq.Broker) -> None:
    settings = runtime.settings

    def callable_actors() -> list[str]:
        return [a for a in settings.api_actors if a in broker.actors]

    def create_job(body: m.JobRequest, header: m.IdempotencyHeader) -> tuple[Response, int]:
        """Enqueue an allow-listed actor as a tracked job (once per ``Idempotency-Key``)."""
        if body.actor not in callable_actors():
            raise ApiError(404, f"unknown actor {body.actor!r} (callable: {', '.join(callable_actors())})")
        actor = broker.get_actor(body.actor)
        check_arguments(actor, body.args, body.kwargs)
        initiated_by = body.initiated_by or request_header("X-Initiated-By", 128) or "api"
        trace_id = request_header("X-Request-ID", 64)
        return accept_job(runtime, header, lambda: tracking.enqueue_job(
            runtime.database, actor, body.args, body.kwargs, initiated_by=initiated_by, trace_id=trace_id,
        ).message_id)  # fmt: skip

    # the document describes each callable actor's arguments (flask-openapi3 reads the annotation)
    create_job.__annotations__["body"] = m.job_request_for(
        {a: broker.get_actor(a).fn for a in callable_actors()}
    )
    app.post("/api/v1/jobs", responses=job_statuses(404), security=BEARER)(create_job)

    @app.get("/api/v1/jobs/<job_id>", responses=statuses(200, m.Job, 401, 404, 422), security=BEARER)
    def get_job(path: m.JobPath) -> Response:
        """A job's status, progress, result or error."""
        job = tracking.get_job(runtime.database, path.job_id)
        if job is None:
            raise ApiError(404, f"no job with id {path.job_id!r}")
        return jsonify(tracking.as_dict(job))

    @app.post(
        "/api/v1/jobs/<job_id>/cancel", responses=statuses(200, m.CancelResult, 401, 404, 409, 422),
        security=BEARER,
    )  # fmt: skip
    def cancel_job(path: m.JobPath) -> tuple[Response, int]:
        """Cancel a job or a broadcast: a queued job never runs, a running one stops at its next
        progress report, a broadcast's pending rows are withdrawn. 409 when it is over already."""
        by = request_header("X-Initiated-By", 128) or "api"
        result = tracking.cancel_job(runtime.database, path.job_id, by=by, redis_client=runtime.redis)
        if result.outcome == "unknown":
            raise ApiError(404, f"no job or broadcast with id {path.job_id!r}")
        if result.outcome == "nothing_to_cancel":
            raise ApiError(409, f"nothing to cancel: job {path.job_id!r} is {result.status}", result.detail)
        return jsonify(result.as_dict()), 200

    @app.get("/api/v1/alerts", responses=statuses(200, m.AlertList, 401, 422), security=BEARER)
    def alerts(query: m.AlertQuery) -> Response:
        """Recent alerts, one per fingerprint, newest first, with how often each occurred."""
        from worker_app.alerts import recent_alerts

        return jsonify(
            items=recent_alerts(runtime.redis, query.limit, severity=query.severity, kind=query.kind)
        )

    @app.get("/api/v1/alerts/open", responses=statuses(200, m.OpenAlertList, 401, 422), security=BEARER)
    def open_alerts(query: m.OpenAlertQuery) -> Response:
        """Open alerts (conditions true now), oldest first."""
        from dataclasses import asdict

        from worker_app.open_alerts import OpenAlerts

        found = OpenAlerts(runtime.redis).all()
        return jsonify(items=[asdict(a) for a in found if query.severity in (None, a.severity)])


def job_statuses(*errors: int) -> ResponseDict:
    """The documented answers of an endpoint that creates a job: 202, 409 (its ``Idempotency-Key`` in
    progress), 401, 413, 422, 503 and ``errors``."""
    return {**statuses(202, m.JobAccepted, 401, *errors, 413, 422), 409: m.KEY_IN_PROGRESS}


def accept_job(
    runtime: Runtime, header: m.IdempotencyHeader, create: Callable[[], str]
) -> tuple[Response, int]:
    """202 ``{job_id}`` of the job ``create`` records and publishes — once per ``Idempotency-Key``
    (:func:`worker_app.idempotency.once`): a retry gets the first job's id with ``Idempotent-Replayed:
    true``; 422 when the key was used for another request; 409 while the first is still in progress."""
    key = header.idempotency_key
    try:
        accepted = idempotency.once(
            runtime.database, key, request.path, request.get_json(silent=True), create
        )
    except idempotency.KeyReused as e:
        raise ApiError(422, str(e), e.detail) from None
    except idempotency.KeyInProgress as e:
        busy = jsonify(error=str(e), detail=e.detail)
        busy.headers["Retry-After"] = str(e.retry_after_s)
        return busy, 409
    response = jsonify(job_id=accepted.job_id)
    if accepted.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response, 202


def _queue_routes(app: OpenAPI, runtime: Runtime) -> None:
    @app.get("/api/v1/queues", responses=statuses(200, m.QueueReport, 401), security=BEARER)
    def queues() -> Response:
        """Depths, consumers and rates of every domain queue (an ordered domain's shards too), and
        the paused queues."""
        from worker_app.queues import queue_report

        report = queue_report(runtime.settings, database=runtime.database).as_dict()
        paused = pauses.paused_queues(runtime.database).values()
        return jsonify({**report, "paused": [p.as_dict() for p in paused]})

    def domain(queue: str) -> str:
        try:
            return pauses.domain_queue(queue)
        except pauses.NotADomainQueue as e:
            raise ApiError(404, str(e)) from None

    changes = statuses(200, m.PauseResult, 401, 404, 422)

    @app.post("/api/v1/queues/<queue>/pause", responses=changes, security=BEARER)
    def pause_queue(path: m.QueuePath, body: m.PauseRequest) -> Response:
        """Pause a domain queue: every worker stops taking new messages from it (and its delay queue,
        an ordered domain's shards) within a few seconds; running messages finish; kept until resumed,
        across worker restarts. ``changed`` is false when it was paused already."""
        by = request_header("X-Initiated-By", 128) or "api"
        changed = pauses.pause(runtime.database, domain(path.queue), by=by, reason=body.reason)
        return jsonify(queue=path.queue, paused=True, changed=changed)

    @app.post("/api/v1/queues/<queue>/resume", responses=changes, security=BEARER)
    def resume_queue(path: m.QueuePath) -> Response:
        """Resume a paused domain queue; ``changed`` is false when it was not paused."""
        by = request_header("X-Initiated-By", 128) or "api"
        changed = pauses.resume(runtime.database, domain(path.queue), by=by)
        return jsonify(queue=path.queue, paused=False, changed=changed)


def _on_publisher(broker: dramatiq.Broker, fn: Callable[[], None]) -> None:
    """``fn`` where serve publishes: on a publisher thread, whose connection it checks (no extra one)."""
    run = getattr(broker, "on_publisher", None)
    if run is None:
        fn()
    else:
        run(fn)


def request_header(name: str, max_length: int) -> str | None:
    """An optional header's value; 422 when it is too long or holds a control character."""
    value = request.headers.get(name)
    if not value:
        return None
    if len(value) > max_length or not value.isprintable():
        raise ApiError(422, f"{name}: expected at most {max_length} printable characters")
    return value


def _dead_letter_routes(app: OpenAPI, runtime: Runtime, broker: dramatiq.Broker) -> None:
    database = runtime.database

    @app.get("/api/v1/dead-letters", responses=statuses(200, m.DeadLetterList, 401, 422), security=BEARER)
    def list_dead(query: m.DeadLetterQuery) -> Response:
        """Dead letters matching the filters, the most recent first (no tracebacks); ``q`` searches
        the actor, the exception type and message and the arguments, case-insensitively."""
        where = query.where(status=query.status)
        rows = dead_letters.listing(database, where, query.limit)
        return jsonify(
            total=dead_letters.count(database, where),
            items=[dead_letters.as_dict(r, with_traceback=False) for r in rows],
        )

    @app.get(
        "/api/v1/dead-letters/<int:dead_letter_id>",
        responses=statuses(200, m.DeadLetter, 401, 404, 422), security=BEARER,
    )  # fmt: skip
    def show_dead(path: m.DeadLetterPath) -> Response:
        """One dead letter with its traceback."""
        found = dead_letters.listing(
            database, dead_letters.DeadLetterFilter(ids=(path.dead_letter_id,), status="all"), 1
        )
        if not found:
            raise ApiError(404, f"no dead letter with id {path.dead_letter_id}")
        return jsonify(dead_letters.as_dict(found[0]))

    @app.post(
        "/api/v1/dead-letters/replay",
        responses=statuses(200, m.ReplayResult, 401, 413, 422),
        security=BEARER,
    )
    def replay(body: m.Selection) -> Response:
        """Replay the matching dead letters (crash-safe; each with a fresh retry budget)."""
        report = dead_letters.replay(database, broker, body.where(body.ids))
        return jsonify(
            matched=report.matched, replayed=report.replayed,
            messages={str(k): v for k, v in report.messages.items()},
            skipped={str(k): v for k, v in report.skipped.items()},
        )  # fmt: skip

    @app.post(
        "/api/v1/dead-letters/discard", responses=statuses(200, m.DiscardResult, 401, 413, 422),
        security=BEARER,
    )  # fmt: skip
    def discard(body: m.Selection) -> Response:
        """Mark the matching dead letters discarded (kept for the record, never replayed)."""
        return jsonify(discarded=dead_letters.discard(database, body.where(body.ids)))


def check_serving(host: str, token_set: bool) -> None:
    """Refuse an unauthenticated API on anything but loopback."""
    if not token_set and not is_loopback(host):
        raise ConfigurationError(
            f"API_TOKEN is not set: the API serves without a token only on loopback, not on {host!r}"
        )
