"""A small threaded WSGI server that keeps HTTP/1.1 connections open, for the sandbox.

werkzeug's development server (3.x) sends ``Connection: close`` on every response and starts a
thread per request; at the request rates of the notification benchmarks the sandbox then spent most
of its CPU opening and closing TCP connections and threads, and every worker paid a new connection
per Telegram call. api.telegram.org keeps connections alive, so the sandbox does too: one thread
per connection, requests answered in order on it, and a response always carries its length.

Deliberately small: request bodies must come with ``Content-Length`` (a chunked request gets 411
and the connection is closed), and a response body is buffered whole before it is written (the
sandbox's replies are small JSON documents).
"""

from __future__ import annotations

import contextlib
import io
import socket
import socketserver
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import unquote_to_bytes

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class _Wakeable(Protocol):
    def wake_sleepers(self) -> None: ...


StateT = TypeVar("StateT", bound=_Wakeable)


IDLE_TIMEOUT_S = 60.0
"""An idle keep-alive connection is closed after this long without a request."""
MAX_BODY_BYTES = 64 * 1024 * 1024


class KeepAliveServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    """Serves ``app`` on ``(host, port)``; ``port`` 0 picks a free one (read it from ``.port``).

    :meth:`close_connections` drops every open connection, so that a stopped server's threads do
    not go on answering clients that kept a connection from before.
    """

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, host: str, port: int, app: WsgiApp, handler: type[WsgiRequestHandler]) -> None:
        self.app = app
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__((host, port), handler)
        self.host: str = host
        self.port: int = int(self.server_address[1])

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Shut every open connection down; their handler threads then end."""
        with self._open_lock:
            open_now = list(self._open)
        for connection in open_now:
            with contextlib.suppress(OSError):  # already closed by the peer
                connection.shutdown(socket.SHUT_RDWR)


class WsgiRequestHandler(BaseHTTPRequestHandler):
    """Answers each request on a connection by calling the server's WSGI app."""

    protocol_version = "HTTP/1.1"
    timeout = IDLE_TIMEOUT_S
    server: KeepAliveServer

    def log_message(self, format: str, *args: Any) -> None:
        return None  # no access log: at >1,000 requests/s it costs more than the answer

    def serve(self) -> None:
        """Read the body, call the app, write its response with its length in one write."""
        if self.headers.get("Transfer-Encoding", "").lower() not in ("", "identity"):
            self._refuse(411, b"Length Required")
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY_BYTES:
            self._refuse(400, b"Bad Content-Length")
            return
        body = self.rfile.read(length) if length else b""
        self.answer(body)

    # every method goes to the app (a 405 is its business)
    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = serve

    def answer(self, body: bytes) -> None:
        """Call the WSGI app with ``body`` and write its response (subclasses may intercept)."""
        started: list[Any] = []
        chunks: list[bytes] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            started[:] = [status, headers]
            return chunks.append  # the legacy write() callable

        result = self.server.app(self._environ(body), start_response)
        try:
            chunks.extend(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        status, headers = started
        self._write(status, headers, b"".join(chunks))

    def _environ(self, body: bytes) -> dict[str, Any]:
        path, _, query = self.path.partition("?")
        environ: dict[str, Any] = {
            "REQUEST_METHOD": self.command,
            "SCRIPT_NAME": "",
            "PATH_INFO": unquote_to_bytes(path).decode("latin-1"),
            "QUERY_STRING": query,
            "SERVER_NAME": self.server.host,
            "SERVER_PORT": str(self.server.port),
            "SERVER_PROTOCOL": self.request_version,
            "REMOTE_ADDR": self.client_address[0],
            "REMOTE_PORT": str(self.client_address[1]),
            "CONTENT_LENGTH": str(len(body)),
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        for name, value in self.headers.items():
            key = name.upper().replace("-", "_")
            if key == "CONTENT_TYPE":
                environ["CONTENT_TYPE"] = value
            elif key != "CONTENT_LENGTH":
                environ["HTTP_" + key] = value
        return environ

    def _write(self, status: str, headers: list[tuple[str, str]], body: bytes) -> None:
        lines = [f"{self.protocol_version} {status}"]
        lines += [f"{name}: {value}" for name, value in headers if name.lower() != "content-length"]
        lines.append(f"Content-Length: {len(body)}")
        if self.close_connection:  # the client asked to close, or spoke HTTP/1.0 without keep-alive
            lines.append("Connection: close")
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)

    def _refuse(self, code: int, text: bytes) -> None:
        self.close_connection = True
        self._write(f"{code} {text.decode()}", [("Content-Type", "text/plain")], text)


@dataclass
class RunningServer(Generic[StateT]):
    """A sandbox part serving on a background thread: its base ``url``, its ``state`` and ``stop()``."""

    url: str
    state: StateT
    _server: KeepAliveServer = field(repr=False)
    _thread: threading.Thread = field(repr=False)

    def stop(self) -> None:
        """Stop serving, release requests sleeping on injected latency and close the socket."""
        self.state.wake_sleepers()
        self._server.shutdown()
        self._server.server_close()
        self._server.close_connections()
        self._thread.join(timeout=5)


def serve_in_thread(server: KeepAliveServer, state: StateT, name: str) -> RunningServer[StateT]:
    """Serve ``server`` on a daemon thread named ``name``."""
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, name=name, daemon=True
    )
    thread.start()
    return RunningServer(f"http://{server.host}:{server.port}", state, server, thread)
