"""The fake Crypto Pay over HTTP: ``/api/{method}`` answered by
:class:`~sandbox.cryptobot.state.CryptoBotState`, plus its ``/_sandbox/`` admin endpoints
(:mod:`sandbox.cryptobot.admin`), on a keep-alive server (:mod:`sandbox.http11`).

Parameters come from the query string, a form (urlencoded or multipart) or a JSON object body, merged
(JSON over form over query), so that every client style of CONTRACTS.md works: GET with a query
string, POST JSON (``getMe`` as a GET with an empty body and ``Content-Type: application/json`` too),
POST form. When the state says "drop" (the ``down`` fault) the connection is closed without an answer.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Flask, Response, request

from sandbox.cryptobot.admin import add_admin_routes
from sandbox.cryptobot.format import REPLY_CONTENT_TYPE, ApiError, CpReply, compact_json
from sandbox.cryptobot.state import CryptoBotState
from sandbox.http11 import KeepAliveServer, RunningServer, WsgiRequestHandler, serve_in_thread

DROP_HEADER = "X-Sandbox-Drop-Connection"
"""Set on the WSGI response when the connection must be closed unanswered (never sent)."""
_FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")


class _CryptoPayRequestHandler(WsgiRequestHandler):
    """Closes the connection without writing anything when the app marked the response with
    :data:`DROP_HEADER`."""

    def _write(self, status: str, headers: list[tuple[str, str]], body: bytes) -> None:
        if any(name == DROP_HEADER for name, _ in headers):
            self.close_connection = True
            return
        super()._write(status, headers, body)


RunningCryptoBot = RunningServer[CryptoBotState]
"""The fake Crypto Pay serving on a background thread (``url``, ``state``, ``stop()``)."""


def make_cryptobot_app(state: CryptoBotState | None = None) -> Flask:
    """The Flask app answering ``/api/{method}`` and ``/_sandbox/`` from ``state`` (default: a fresh one)."""
    state = state if state is not None else CryptoBotState()
    app = Flask("sandbox.cryptobot")
    app.extensions["cryptobot_state"] = state

    @app.route("/api/<method>", methods=["GET", "POST"])
    def crypto_pay_api(method: str) -> Response:
        params, body_error = _params()
        reply = state.handle(request.method, method, params, dict(request.headers), body_error)
        return Response(status=200, headers={DROP_HEADER: "1"}) if reply is None else _response(reply)

    app.register_error_handler(404, lambda e: _response(ApiError(404, "NOT_FOUND", str(e)).reply()))
    app.register_error_handler(405, lambda e: _response(ApiError(405, "METHOD_NOT_ALLOWED", str(e)).reply()))
    add_admin_routes(app, state)
    return app


def start_cryptobot_in_thread(
    host: str = "127.0.0.1", port: int = 0, *, state: CryptoBotState | None = None
) -> RunningCryptoBot:
    """Start the fake Crypto Pay on a daemon thread (``port`` 0 picks a free one), for tests and ``serve``."""
    state = state if state is not None else CryptoBotState()
    handler = type("CryptoBotRequestHandler", (_CryptoPayRequestHandler,), {})
    server = KeepAliveServer(host, port, make_cryptobot_app(state), handler)
    return serve_in_thread(server, state, "cryptobot-sandbox")


def _params() -> tuple[dict[str, Any], str | None]:
    """The merged parameters, and what is wrong with the body when it is neither a form nor JSON."""
    params: dict[str, Any] = request.args.to_dict()
    if request.mimetype in _FORMS:
        params.update(request.form.to_dict())
        return params, None
    data = request.get_data(cache=False)
    if not data.strip():
        return params, None
    try:
        body = json.loads(data)
    except ValueError:
        return params, "the body is neither JSON nor a form"
    if not isinstance(body, dict):
        return params, f"the JSON body must be an object, not {type(body).__name__}"
    params.update(body)
    return params, None


def _response(reply: CpReply) -> Response:
    if reply.plain:
        return Response(str(reply.body), status=reply.status, mimetype="text/plain")
    return Response(compact_json(reply.body), status=reply.status, content_type=REPLY_CONTENT_TYPE)
