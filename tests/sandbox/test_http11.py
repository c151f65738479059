"""The sandbox's HTTP layer keeps connections alive like api.telegram.org, and lets go of them on stop."""

from __future__ import annotations

import socket
import threading

import pytest
import requests

from sandbox.server import RunningSandbox, start_in_thread
from sandbox.telegram import DEFAULT_TOKEN


def _raw(sandbox: RunningSandbox) -> socket.socket:
    host, port = sandbox.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=5)


def _read_replies(conn: socket.socket, count: int = 1) -> list[bytes]:
    """``count`` whole responses: each its headers, then exactly Content-Length bytes of body."""
    data, replies = b"", list[bytes]()
    while len(replies) < count:
        while b"\r\n\r\n" not in data:
            data += conn.recv(65536)
        head, _, data = data.partition(b"\r\n\r\n")
        fields = dict(line.lower().split(b":", 1) for line in head.split(b"\r\n")[1:])
        length = int(fields[b"content-length"])
        while len(data) < length:
            data += conn.recv(65536)
        replies.append(head + b"\r\n\r\n" + data[:length])
        data = data[length:]
    return replies


def _read_reply(conn: socket.socket) -> bytes:
    return _read_replies(conn)[0]


def test_one_connection_carries_many_requests(
    sandbox: RunningSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    accepted: list[object] = []
    server = sandbox._server
    original = server.process_request

    def counting(request: socket.socket, address: object) -> None:
        accepted.append(address)
        original(request, address)

    monkeypatch.setattr(server, "process_request", counting)
    with requests.Session() as session:
        for chat_id in range(1, 51):
            params = {"chat_id": chat_id, "text": "hi"}
            reply = session.post(f"{sandbox.url}/bot{DEFAULT_TOKEN}/sendMessage", json=params, timeout=5)
            assert reply.status_code == 200 and reply.json()["ok"] is True
            assert reply.headers.get("Connection", "").lower() != "close"
    assert len(accepted) == 1
    assert len(sandbox.state.received()) == 50


def test_pipelined_requests_are_answered_in_order(sandbox: RunningSandbox) -> None:
    request = (
        "POST /bot{token}/sendMessage HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Content-Length: {length}\r\n\r\n{body}"
    )
    with _raw(sandbox) as conn:
        for chat_id in (7, 8):
            body = f'{{"chat_id": {chat_id}, "text": "t{chat_id}"}}'
            conn.sendall(request.format(token=DEFAULT_TOKEN, length=len(body), body=body).encode())
        first, second = _read_replies(conn, 2)
    assert b'"id": 7' in first and b'"id": 8' in second


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ("Transfer-Encoding: chunked\r\n", b"411"),
        ("Content-Length: nonsense\r\n", b"400"),
        ("Content-Length: -5\r\n", b"400"),
    ],
)
def test_a_body_without_a_usable_length_is_refused_and_the_connection_closed(
    sandbox: RunningSandbox, headers: str, status: bytes
) -> None:
    with _raw(sandbox) as conn:
        conn.sendall(f"POST /bot{DEFAULT_TOKEN}/getMe HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode())
        reply = _read_reply(conn)
        assert reply.split(b" ")[1] == status
        assert b"Connection: close" in reply
        assert conn.recv(1) == b""  # closed by the server


def test_http_1_0_client_gets_its_connection_closed(sandbox: RunningSandbox) -> None:
    with _raw(sandbox) as conn:
        conn.sendall(f"GET /bot{DEFAULT_TOKEN}/getMe HTTP/1.0\r\n\r\n".encode())
        reply = _read_reply(conn)
        assert reply.startswith(b"HTTP/1.1 200") and b"Connection: close" in reply
        assert conn.recv(1) == b""


def test_stop_drops_kept_alive_connections() -> None:
    running = start_in_thread()
    conn = _raw(running)
    conn.sendall(f"GET /bot{DEFAULT_TOKEN}/getMe HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert _read_reply(conn).startswith(b"HTTP/1.1 200")
    closed = threading.Event()

    def wait_for_close() -> None:
        if conn.recv(1) == b"":
            closed.set()

    reader = threading.Thread(target=wait_for_close)
    reader.start()
    running.stop()
    reader.join(timeout=5)
    conn.close()
    assert closed.is_set(), "a stopped sandbox kept a client's connection open"
