"""The sandbox's HTTP layer: the fake Telegram Bot API plus its ``/_sandbox/`` admin endpoints, and
:func:`serve`, which also runs the fake Remnawave panel (:mod:`sandbox.remnawave`) on its own port.

A separate program for development, demos, tests and benchmarks (``python -m sandbox``): loopback by
default, everything in memory (:class:`sandbox.telegram.TelegramState`), served by a small threaded
HTTP/1.1 server that keeps connections alive like api.telegram.org (:mod:`sandbox.http11`).

Admin endpoints (JSON in, JSON out; a bad request gets 400 ``{"ok": false, "error": "..."}``):

* ``POST /_sandbox/reset`` — back to the initial state.
* ``POST /_sandbox/tokens`` ``{"token": "123:abc"}`` — accept another bot token.
* ``POST /_sandbox/chats`` ``{"chat_id": 42, "state": "blocked"}`` — states: blocked, deactivated,
  kicked, not_found, migrated (optional ``migrate_to_chat_id``); ``"ok"`` or null clears the mark.
* ``POST /_sandbox/faults`` — any of ``{"rate_limit": {"count": N, "retry_after": S}}``,
  ``{"rate_limit_fraction": {"fraction": F, "retry_after": S, "seed": 0}}``,
  ``{"server_error": {"count": N, "status": 502}}``, ``{"latency_ms": M}`` (Telegram slow),
  ``{"down": true}`` (Telegram down: every Bot API call has its connection closed without an answer,
  as when its front end or the network path is gone; the admin endpoints keep answering),
  ``{"enforce_limits": {"global_per_s": 30, "per_chat_per_s": 1}}`` (null turns a fault off);
  answers (like ``GET``) ``{"ok": true, "faults": {...}}``.
* ``GET /_sandbox/received[?chat_id=]`` — every sendMessage seen, oldest first.
* ``GET /_sandbox/stats`` — ``{"total", "by_status", "by_method"}``; calls dropped by the ``down``
  fault count under the status ``"dropped"``.
"""

from __future__ import annotations

import contextlib
import http
import json
import threading
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from flask import Flask, Response, request

from sandbox.http11 import KeepAliveServer, RunningServer, WsgiRequestHandler, serve_in_thread
from sandbox.telegram import DEFAULT_TOKEN, ApiError, TelegramState

FaultSettings = dict[str, float | None]
_KNOWN_STATUSES = frozenset(int(status) for status in http.HTTPStatus)


class _BotRequestHandler(WsgiRequestHandler):
    """Answers through the Flask app — unless Telegram is "down": then a Bot API call has its
    connection closed unanswered."""

    state: TelegramState | None = None
    """Set on the per-server subclass (:func:`_make_server`): whose ``down`` fault applies."""

    def answer(self, body: bytes) -> None:
        if self.state is not None and self.path.startswith("/bot") and self.state.drop_call(self.path):
            self.close_connection = True
            return
        super().answer(body)


RunningSandbox = RunningServer[TelegramState]
"""The Telegram part serving on a background thread (``url``, ``state``, ``stop()``)."""


def make_telegram_app(state: TelegramState | None = None) -> Flask:
    """The Flask app answering ``/bot<token>/<method>`` from ``state`` (a fresh one by default)."""
    state = state if state is not None else TelegramState()
    app = Flask("sandbox.telegram")
    app.extensions["telegram_state"] = state

    @app.route("/bot<token>/<method>", methods=["GET", "POST"])
    def bot_api(token: str, method: str) -> Response:
        reply = state.call(token, method, _bot_params(), request.headers.get("X-Request-ID"))
        return _json(reply.body, reply.status, reply.headers)

    app.register_error_handler(404, _not_found)
    _add_admin_routes(app, state)
    return app


def serve(
    host: str = "127.0.0.1",
    telegram_port: int = 8081,
    remnawave_port: int = 8082,
    demo: bool = False,
    cryptobot_port: int = 8083,
) -> None:
    """Serve the fake Telegram, the fake Remnawave panel and the fake Crypto Pay until interrupted, one
    line each with its URL and token; ``demo`` seeds the panel (:func:`sandbox.remnawave.demo.seed_demo`)."""
    # imported here: sandbox.remnawave.admin and sandbox.cryptobot.admin re-use this module's admin helpers
    from sandbox.cryptobot.app import start_cryptobot_in_thread
    from sandbox.cryptobot.format import DEFAULT_TOKEN as CRYPTOBOT_TOKEN
    from sandbox.remnawave.app import start_remnawave_in_thread
    from sandbox.remnawave.demo import seed_demo
    from sandbox.remnawave.format import DEFAULT_TOKEN as REMNAWAVE_TOKEN

    telegram = start_in_thread(host, telegram_port)
    remnawave = start_remnawave_in_thread(host, remnawave_port)
    cryptobot = start_cryptobot_in_thread(host, cryptobot_port)
    seeded = f", demo data: {seed_demo(remnawave.state)}" if demo else ""
    print(f"Telegram sandbox on {telegram.url} (bot token {DEFAULT_TOKEN})", flush=True)
    print(
        f"Remnawave sandbox on {remnawave.url} (API token {REMNAWAVE_TOKEN}; send X-Forwarded-For and "
        f"X-Forwarded-Proto: https{seeded})",
        flush=True,
    )
    print(f"Crypto Pay sandbox on {cryptobot.url} (app token {CRYPTOBOT_TOKEN})", flush=True)
    try:
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is the normal way to stop it
            threading.Event().wait()
    finally:
        cryptobot.stop()
        remnawave.stop()
        telegram.stop()


def start_in_thread(
    host: str = "127.0.0.1", port: int = 0, *, state: TelegramState | None = None
) -> RunningSandbox:
    """Start the sandbox on a daemon thread (``port`` 0 picks a free one), for tests and benchmarks."""
    state = state if state is not None else TelegramState()
    return serve_in_thread(_make_server(host, port, state), state, "telegram-sandbox")


def _make_server(host: str, port: int, state: TelegramState) -> KeepAliveServer:
    handler = type("SandboxRequestHandler", (_BotRequestHandler,), {"state": state})
    return KeepAliveServer(host, port, make_telegram_app(state), handler)


def _bot_params() -> dict[str, Any]:
    """Query string, form (urlencoded or multipart) and JSON object parameters, merged."""
    params: dict[str, Any] = request.args.to_dict()
    params.update(request.form.to_dict())
    body = request.get_json(silent=True) if request.is_json else None
    if isinstance(body, dict):
        params.update(body)
    return params


def _json(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(json.dumps(body), status=status, headers=dict(headers or {}), mimetype="application/json")


def _not_found(error: Exception) -> Response:
    return _json({"ok": False, "error_code": 404, "description": "Not Found"}, 404)


def _add_admin_routes(app: Flask, state: TelegramState) -> None:
    def route(rule: str, action: Callable[[], Any], methods: tuple[str, ...] = ("POST",)) -> None:
        app.add_url_rule(f"/_sandbox/{rule}", f"sandbox_{rule}", lambda: _admin(action), methods=methods)

    route("reset", state.reset)
    route("tokens", lambda: state.add_token(_token(_admin_body())))
    route("chats", lambda: _mark_chat(state, _admin_body()))
    route("faults", lambda: _faults(state), methods=("GET", "POST"))
    route("received", lambda: state.received(request.args.get("chat_id")), methods=("GET",))
    route("stats", state.stats, methods=("GET",))


def _admin(action: Callable[[], Any]) -> Response:
    try:
        result = action()
    except (ApiError, ValueError, TypeError) as e:
        return _json({"ok": False, "error": str(e)}, 400)
    return _json({"ok": True} if result is None else result)


def _admin_body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ValueError("expected a JSON object body")
    return body


def _token(body: Mapping[str, Any]) -> str:
    token = body.get("token")
    if not isinstance(token, str) or not token or "/" in token:
        raise ValueError("token must be a non-empty string without '/'")
    return token


def _mark_chat(state: TelegramState, body: Mapping[str, Any]) -> None:
    chat_id, chat_state, migrate_to = body.get("chat_id"), body.get("state"), body.get("migrate_to_chat_id")
    if not isinstance(chat_id, int | str) or isinstance(chat_id, bool):
        raise ValueError("chat_id must be an integer or an @username")
    if migrate_to is not None and (not isinstance(migrate_to, int) or isinstance(migrate_to, bool)):
        raise ValueError("migrate_to_chat_id must be an integer")
    state.mark_chat(chat_id, None if chat_state in (None, "ok") else chat_state, migrate_to)


def _faults(state: TelegramState) -> dict[str, Any]:
    return faults_endpoint(state, _FAULT_PARSERS)


class _Faulty(Protocol):
    def set_faults(self, **settings: Any) -> None: ...
    def faults(self) -> dict[str, Any]: ...


def faults_endpoint(
    state: _Faulty, parsers: Mapping[str, Callable[[Any], Mapping[str, Any]]]
) -> dict[str, Any]:
    """``/_sandbox/faults``: a POST sets the faults its body names (each parsed by ``parsers``; an
    unknown one is a ValueError naming the known ones); both answer the current faults."""
    if request.method == "POST":
        settings: dict[str, Any] = {}
        for name, value in _admin_body().items():
            parser = parsers.get(name)
            if parser is None:
                raise ValueError(f"unknown fault {name!r}; known: {sorted(parsers)}")
            settings.update(parser(value))
        state.set_faults(**settings)
    return {"ok": True, "faults": state.faults()}


def _rate_limit(value: Any) -> FaultSettings:
    spec = _spec(value)
    return {
        "rate_limit_count": _count(spec, "count"),
        "rate_limit_retry_after": _count(spec, "retry_after", 1),
    }


def _rate_limit_fraction(value: Any) -> FaultSettings:
    spec = _spec(value)
    fraction = spec.get("fraction", 0.0)
    if not isinstance(fraction, int | float) or isinstance(fraction, bool) or not 0 <= fraction <= 1:
        raise ValueError("fraction must be a number between 0 and 1")
    return {
        "rate_limit_fraction": float(fraction),
        "rate_limit_fraction_retry_after": _count(spec, "retry_after", 1),
        "rate_limit_seed": _count(spec, "seed"),
    }


def _server_error(value: Any) -> FaultSettings:
    spec = _spec(value)
    status = _count(spec, "status", 502)
    if not 500 <= status <= 599 or status not in _KNOWN_STATUSES:
        raise ValueError("status must be a known 5xx HTTP status")
    return {"server_error_count": _count(spec, "count"), "server_error_status": status}


def _latency(value: Any) -> FaultSettings:
    return {"latency_ms": _count({"latency_ms": value}, "latency_ms")}


def _down(value: Any) -> FaultSettings:
    if value is not None and not isinstance(value, bool):
        raise ValueError("down takes true or false (or null)")
    return {"down": bool(value)}


def _enforce_limits(value: Any) -> FaultSettings:
    spec = _spec(value)
    rates: FaultSettings = {name: spec.get(name) for name in ("global_per_s", "per_chat_per_s")}
    for name, rate in rates.items():
        if rate is not None and (not isinstance(rate, int | float) or isinstance(rate, bool) or rate <= 0):
            raise ValueError(f"{name} must be a positive number or null")
    return rates


def _spec(value: Any) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError("each fault takes a JSON object (or null to turn it off)")
    return value


def _count(spec: Mapping[str, Any], name: str, default: int = 0) -> int:
    value = spec.get(name)
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer")
    return value


_FAULT_PARSERS: dict[str, Callable[[Any], FaultSettings]] = {
    "rate_limit": _rate_limit,
    "rate_limit_fraction": _rate_limit_fraction,
    "server_error": _server_error,
    "latency_ms": _latency,
    "down": _down,
    "enforce_limits": _enforce_limits,
}
