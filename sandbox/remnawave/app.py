"""The fake Remnawave panel over HTTP: ``/api/...`` answered by
:class:`~sandbox.remnawave.state.RemnawaveState`, plus its ``/_sandbox/`` admin endpoints
(:mod:`sandbox.remnawave.admin`), on a keep-alive server (:mod:`sandbox.http11`).

When the state says "drop" (proxy headers missing or wrong, or the ``down`` fault), the connection is
closed without any HTTP response, as the real panel destroys the socket: clients see a connection
error, never a status code.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Flask, Response, request

from sandbox.http11 import KeepAliveServer, RunningServer, WsgiRequestHandler, serve_in_thread
from sandbox.remnawave.admin import add_admin_routes
from sandbox.remnawave.format import BAD_JSON, RwReply
from sandbox.remnawave.state import RemnawaveState
from sandbox.server import _json

DROP_HEADER = "X-Sandbox-Drop-Connection"
"""Set on the WSGI response when the connection must be closed unanswered (never sent)."""
_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


class _PanelRequestHandler(WsgiRequestHandler):
    """Joins repeated proxy headers the way Node.js does (``https, https``), and closes the connection
    without writing anything when the app marked the response with :data:`DROP_HEADER`."""

    def answer(self, body: bytes) -> None:
        for name in ("X-Forwarded-For", "X-Forwarded-Proto"):
            values = self.headers.get_all(name) or []
            if len(values) > 1:
                del self.headers[name]
                self.headers[name] = ", ".join(values)
        super().answer(body)

    def _write(self, status: str, headers: list[tuple[str, str]], body: bytes) -> None:
        if any(name == DROP_HEADER for name, _ in headers):
            self.close_connection = True
            return
        super()._write(status, headers, body)


RunningRemnawave = RunningServer[RemnawaveState]
"""The fake panel serving on a background thread (``url``, ``state``, ``stop()``)."""


def make_remnawave_app(state: RemnawaveState | None = None) -> Flask:
    """The Flask app answering ``/api/...`` from ``state`` (a fresh one by default) and ``/_sandbox/``."""
    state = state if state is not None else RemnawaveState()
    app = Flask("sandbox.remnawave")
    app.extensions["remnawave_state"] = state

    @app.route("/api", defaults={"rest": ""}, methods=_METHODS)
    @app.route("/api/<path:rest>", methods=_METHODS)
    def panel_api(rest: str) -> Response:
        query = request.query_string.decode("latin-1")
        reply = state.handle(request.method, request.path, query, _body(), dict(request.headers))
        return Response(status=200, headers={DROP_HEADER: "1"}) if reply is None else _response(reply)

    add_admin_routes(app, state)
    return app


def start_remnawave_in_thread(
    host: str = "127.0.0.1", port: int = 0, *, state: RemnawaveState | None = None
) -> RunningRemnawave:
    """Start the fake panel on a daemon thread (``port`` 0 picks a free one), for tests and ``serve``."""
    state = state if state is not None else RemnawaveState()
    handler = type("RemnawaveRequestHandler", (_PanelRequestHandler,), {})
    server = KeepAliveServer(host, port, make_remnawave_app(state), handler)
    return serve_in_thread(server, state, "remnawave-sandbox")


def _body() -> Any:
    data = request.get_data(cache=False)
    if not data.strip():
        return None
    try:
        return json.loads(data)
    except ValueError:
        return BAD_JSON


def _response(reply: RwReply) -> Response:
    if reply.plain:
        return Response(str(reply.body), status=reply.status, headers=reply.headers, mimetype="text/plain")
    if reply.body is None:  # 202/204: no body, no content type, as the panel answers
        response = Response(b"", status=reply.status, headers=reply.headers)
        del response.headers["Content-Type"]
        return response
    return _json(reply.body, reply.status, reply.headers)
