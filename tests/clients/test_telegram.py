"""TelegramClient over real HTTP against the sandbox: results, error classes, tracing, redaction."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import requests
from werkzeug.serving import make_server

from sandbox.server import RunningSandbox
from sandbox.telegram import DEFAULT_TOKEN
from tests.fixtures.ports import free_port
from worker_app import context
from worker_app.clients.telegram import (
    SentMessage,
    TelegramAuthError,
    TelegramBadRequest,
    TelegramChatMigrated,
    TelegramChatUnavailable,
    TelegramClient,
    TelegramError,
    TelegramRateLimited,
    TelegramUnavailable,
)
from worker_app.errors import PermanentError, RateLimited, UpstreamUnavailable

Headers = list[tuple[str, str]]


def admin(sandbox: RunningSandbox, path: str, body: dict[str, Any]) -> None:
    """Configure the sandbox through its admin API."""
    response = requests.post(f"{sandbox.url}/_sandbox/{path}", json=body, timeout=5)
    assert response.status_code == 200, response.text


@pytest.fixture
def client(sandbox: RunningSandbox) -> Iterator[TelegramClient]:
    telegram = TelegramClient(sandbox.url, DEFAULT_TOKEN, timeout_s=5)
    yield telegram
    telegram.close()


@pytest.fixture
def trace_id() -> Iterator[str]:
    """A known trace id bound as the current message context for the test."""
    bound = "0123456789abcdef0123456789abcdef"
    context.bind(context.MessageContext(trace_id=bound, actor="send_notification"))
    yield bound
    context.bind(None)


@contextmanager
def odd_server(status: str, headers: Headers, body: bytes, seen: list[str] | None = None) -> Iterator[str]:
    """A one-route HTTP server giving a fixed reply the sandbox never gives (header-only 429, HTML);
    the request target of every request it answers is appended to ``seen``."""

    def app(environ: dict[str, Any], start_response: Callable[[str, Headers], Any]) -> list[bytes]:
        if seen is not None:
            seen.append(environ["REQUEST_URI"])
        start_response(status, headers)
        return [body]

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.shutdown()
        server.server_close()


def test_get_me_returns_the_bot_user(client: TelegramClient) -> None:
    # Given the sandbox's default bot token / When / Then
    me = client.get_me()

    assert me["id"] == 100000
    assert me["is_bot"] is True
    assert me["username"] == "sandbox_bot"


def test_sent_message_reports_its_id_chat_and_date(client: TelegramClient, sandbox: RunningSandbox) -> None:
    # Given a private chat
    # When two messages are sent to it
    first = client.send_message(42, "<b>Your subscription</b> expires in 3 days")
    second = client.send_message(42, "Renew now &amp; save")

    # Then Telegram's ids, chat and date come back, and the sandbox received the HTML as sent
    assert first == SentMessage(message_id=1, chat_id=42, date=first.date)
    assert second.message_id == 2
    assert first.date > 1_600_000_000
    received = sandbox.state.received()
    assert [(r["text"], r["parse_mode"], r["status"]) for r in received] == [
        ("<b>Your subscription</b> expires in 3 days", "HTML", 200),
        ("Renew now &amp; save", "HTML", 200),
    ]


def test_plain_text_and_keyboard_options_reach_telegram(
    client: TelegramClient, sandbox: RunningSandbox
) -> None:
    # Given a message without parse mode, silent, with an inline keyboard
    keyboard = {"inline_keyboard": [[{"text": "Renew", "callback_data": "renew:42"}]]}

    # When it is sent
    sent = client.send_message(7, "1 < 2", parse_mode=None, disable_notification=True, reply_markup=keyboard)

    # Then it is accepted as plain text
    assert sent.chat_id == 7
    assert sandbox.state.received()[0]["parse_mode"] is None


def test_rate_limit_carries_the_retry_after_from_the_body(
    client: TelegramClient, sandbox: RunningSandbox
) -> None:
    # Given Telegram answers the next send with 429, retry after 7 s
    admin(sandbox, "faults", {"rate_limit": {"count": 1, "retry_after": 7}})

    # When a message is sent
    with pytest.raises(TelegramRateLimited) as caught:
        client.send_message(42, "hello")

    # Then the error is a RateLimited with Telegram's own delay
    assert isinstance(caught.value, RateLimited)
    assert caught.value.retry_after_s == 7.0
    assert caught.value.error_code == 429
    assert caught.value.description == "Too Many Requests: retry after 7"
    # ... and the very next send goes through
    assert client.send_message(42, "hello").message_id == 1


def test_rate_limit_falls_back_to_the_retry_after_header() -> None:
    # Given a 429 whose body names no delay but whose Retry-After header does
    body = json.dumps({"ok": False, "error_code": 429, "description": "Too Many Requests"}).encode()
    headers = [("Content-Type", "application/json"), ("Retry-After", "12")]
    with odd_server("429 Too Many Requests", headers, body) as url:
        telegram = TelegramClient(url, DEFAULT_TOKEN, timeout_s=5)

        # When a message is sent / Then the header's delay is used
        with pytest.raises(TelegramRateLimited) as caught:
            telegram.send_message(42, "hello")
        telegram.close()

    assert caught.value.retry_after_s == 12.0


def test_a_proxy_from_the_environment_is_used_unless_no_proxy_names_the_host(
    sandbox: RunningSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given HTTP_PROXY pointing at a proxy that answers every call itself
    result = {"message_id": 7, "date": 1, "chat": {"id": 42, "type": "private"}, "text": "x"}
    reply = json.dumps({"ok": True, "result": result}).encode()
    seen: list[str] = []
    for name in ("NO_PROXY", "no_proxy", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    with odd_server("200 OK", [("Content-Type", "application/json")], reply, seen) as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy)

        # When a client is created and sends / Then the call goes through the proxy
        via_proxy = TelegramClient(sandbox.url, DEFAULT_TOKEN, timeout_s=5)
        assert via_proxy.send_message(42, "via the proxy").message_id == 7
        via_proxy.close()
        assert seen == [f"{sandbox.url}/bot{DEFAULT_TOKEN}/sendMessage"]
        assert sandbox.state.received() == []

        # And with NO_PROXY naming Telegram's host the call goes straight there
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        direct = TelegramClient(sandbox.url, DEFAULT_TOKEN, timeout_s=5)
        direct.send_message(42, "direct")
        direct.close()
    assert len(seen) == 1
    assert [m["text"] for m in sandbox.state.received()] == ["direct"]


@pytest.mark.parametrize(
    ("state", "description"),
    [
        ("blocked", "Forbidden: bot was blocked by the user"),
        ("deactivated", "Forbidden: user is deactivated"),
        ("kicked", "Forbidden: bot was kicked from the group chat"),
    ],
)
def test_blocked_user_is_reported_as_chat_unavailable(
    client: TelegramClient, sandbox: RunningSandbox, state: str, description: str
) -> None:
    # Given the chat has blocked, deactivated or kicked the bot
    admin(sandbox, "chats", {"chat_id": 42, "state": state})

    # When a message is sent to it
    with pytest.raises(TelegramChatUnavailable) as caught:
        client.send_message(42, "hello")

    # Then the error is permanent and carries Telegram's code and text
    assert isinstance(caught.value, PermanentError)
    assert (caught.value.error_code, caught.value.description) == (403, description)


@pytest.mark.parametrize("chat_id", [42, "not-a-chat"])
def test_unknown_chat_is_reported_as_chat_unavailable(
    client: TelegramClient, sandbox: RunningSandbox, chat_id: int | str
) -> None:
    # Given a chat Telegram does not know
    admin(sandbox, "chats", {"chat_id": 42, "state": "not_found"})

    # When a message is sent to it / Then
    with pytest.raises(TelegramChatUnavailable) as caught:
        client.send_message(chat_id, "hello")

    assert (caught.value.error_code, caught.value.description) == (400, "Bad Request: chat not found")


@pytest.mark.parametrize(
    ("text", "description"),
    [
        ("x" * 4097, "Bad Request: message is too long"),
        ("<b>unclosed", "Bad Request: can't parse entities: Can't find end tag"),
        ("<blink>no</blink>", "Bad Request: can't parse entities: Unsupported start tag"),
        ("   ", "Bad Request: message text is empty"),
    ],
)
def test_broken_message_is_reported_as_bad_request(
    client: TelegramClient, text: str, description: str
) -> None:
    # Given a message Telegram cannot accept / When it is sent
    with pytest.raises(TelegramBadRequest) as caught:
        client.send_message(42, text)

    # Then the error is permanent for this message and not a chat problem
    assert not isinstance(caught.value, TelegramChatUnavailable)
    assert caught.value.error_code == 400
    assert caught.value.description.startswith(description)


def test_oversized_callback_data_is_a_bad_request(client: TelegramClient) -> None:
    keyboard = {"inline_keyboard": [[{"text": "Renew", "callback_data": "x" * 65}]]}

    with pytest.raises(TelegramBadRequest, match="BUTTON_DATA_INVALID"):
        client.send_message(42, "hello", reply_markup=keyboard)


def test_migrated_group_is_followed_once(client: TelegramClient, sandbox: RunningSandbox) -> None:
    # Given a group that was upgraded to a supergroup
    admin(sandbox, "chats", {"chat_id": -4242, "state": "migrated", "migrate_to_chat_id": -1004242})

    # When a message is sent to the old id
    sent = client.send_message(-4242, "hello")

    # Then it lands in the supergroup and says where it came from
    assert (sent.chat_id, sent.migrated_from, sent.message_id) == (-1004242, -4242, 1)
    assert [(r["chat_id"], r["status"]) for r in sandbox.state.received()] == [(-4242, 400), (-1004242, 200)]


def test_a_second_migration_is_not_followed(client: TelegramClient, sandbox: RunningSandbox) -> None:
    # Given a group whose new id migrated again
    admin(sandbox, "chats", {"chat_id": -1, "state": "migrated", "migrate_to_chat_id": -2})
    admin(sandbox, "chats", {"chat_id": -2, "state": "migrated", "migrate_to_chat_id": -3})

    # When a message is sent / Then the client gives up after one hop, permanently
    with pytest.raises(TelegramChatMigrated) as caught:
        client.send_message(-1, "hello")

    assert caught.value.migrate_to_chat_id == -3
    assert len(sandbox.state.received()) == 2


def test_server_error_is_reported_as_unavailable(client: TelegramClient, sandbox: RunningSandbox) -> None:
    # Given Telegram answers the next send with 502
    admin(sandbox, "faults", {"server_error": {"count": 1, "status": 502}})

    # When a message is sent / Then the error is transient
    with pytest.raises(TelegramUnavailable) as caught:
        client.send_message(42, "hello")

    assert isinstance(caught.value, UpstreamUnavailable)
    assert caught.value.error_code == 502


def test_html_error_page_is_reported_as_unavailable() -> None:
    # Given a proxy in front of Telegram answering 200 with an HTML page
    with odd_server("200 OK", [("Content-Type", "text/html")], b"<html>maintenance</html>") as url:
        telegram = TelegramClient(url, DEFAULT_TOKEN, timeout_s=5)

        # When / Then the malformed reply is transient
        with pytest.raises(TelegramUnavailable, match="not JSON"):
            telegram.get_me()
        telegram.close()


def test_refused_connection_is_reported_as_unavailable() -> None:
    # Given nothing listens on the configured port
    telegram = TelegramClient(f"http://127.0.0.1:{free_port()}", DEFAULT_TOKEN, timeout_s=5)

    # When / Then
    with pytest.raises(TelegramUnavailable) as caught:
        telegram.send_message(42, "hello")
    telegram.close()

    assert caught.value.error_code is None
    assert isinstance(caught.value.__cause__, requests.ConnectionError)


def test_slow_answer_times_out_as_unavailable(sandbox: RunningSandbox) -> None:
    # Given Telegram takes 5 s to answer and the client waits 0.2 s
    admin(sandbox, "faults", {"latency_ms": 5000})
    telegram = TelegramClient(sandbox.url, DEFAULT_TOKEN, timeout_s=0.2)

    # When / Then
    with pytest.raises(TelegramUnavailable) as caught:
        telegram.send_message(42, "hello")
    telegram.close()

    assert isinstance(caught.value.__cause__, requests.Timeout)


def test_send_message_gives_up_after_its_own_short_timeout(sandbox: RunningSandbox) -> None:
    # Given Telegram hangs, and a client that waits 10 s for most calls but 0.3 s for a send
    admin(sandbox, "faults", {"latency_ms": 5000})
    telegram = TelegramClient(sandbox.url, DEFAULT_TOKEN, timeout_s=10, send_timeout_s=0.3)

    # When / Then the send fails on the send timeout, so the circuit breaker hears of it quickly
    with pytest.raises(TelegramUnavailable) as caught:
        telegram.send_message(42, "hello")
    telegram.close()

    assert isinstance(caught.value.__cause__, requests.Timeout)
    assert "read timeout=0.3" in str(caught.value)


def test_a_connection_closed_without_an_answer_is_reported_as_unavailable(
    client: TelegramClient, sandbox: RunningSandbox
) -> None:
    # Given Telegram is down: connections are closed without an answer
    admin(sandbox, "faults", {"down": True})

    # When / Then
    with pytest.raises(TelegramUnavailable) as caught:
        client.send_message(4242, "hello")

    assert caught.value.error_code is None
    assert isinstance(caught.value.__cause__, requests.ConnectionError)
    assert sandbox.state.stats()["by_status"]["dropped"] == 1
    assert sandbox.state.received("4242") == []
    # and once it is back, the same client sends again
    admin(sandbox, "faults", {"down": False})
    assert client.send_message(4242, "hello").message_id == 1


def test_unknown_token_is_an_auth_error(sandbox: RunningSandbox) -> None:
    # Given a token Telegram does not know
    telegram = TelegramClient(sandbox.url, "999:not-our-token", timeout_s=5)

    # When / Then
    with pytest.raises(TelegramAuthError) as caught:
        telegram.get_me()
    telegram.close()

    assert (caught.value.error_code, caught.value.description) == (
        401,
        "Unauthorized: invalid token specified",
    )


def test_wrong_base_url_is_an_auth_error(sandbox: RunningSandbox) -> None:
    # Given a base URL with a wrong path prefix
    telegram = TelegramClient(f"{sandbox.url}/wrong", DEFAULT_TOKEN, timeout_s=5)

    # When / Then the 404 points at the configuration
    with pytest.raises(TelegramAuthError) as caught:
        telegram.get_me()
    telegram.close()

    assert caught.value.error_code == 404


def test_trace_id_is_sent_as_request_id(
    client: TelegramClient, sandbox: RunningSandbox, trace_id: str
) -> None:
    # Given a message context with a known trace id (fixture) / When a message is sent
    client.send_message(42, "hello")

    # Then the sandbox saw it as X-Request-ID
    assert sandbox.state.received(chat_id="42")[0]["request_id"] == trace_id


def test_a_fresh_request_id_is_sent_outside_a_message(
    client: TelegramClient, sandbox: RunningSandbox
) -> None:
    # Given no message context / When a message is sent
    client.send_message(42, "hello")

    # Then a fresh 32-hex id was still sent
    request_id = sandbox.state.received()[0]["request_id"]
    assert len(request_id) == 32
    assert int(request_id, 16) >= 0


def failure_of(
    call: Callable[[TelegramClient], object], base_url: str, token: str, timeout_s: float = 5.0
) -> TelegramError:
    """The TelegramError that ``call`` raises on a fresh client."""
    telegram = TelegramClient(base_url, token, timeout_s=timeout_s)
    try:
        with pytest.raises(TelegramError) as caught:
            call(telegram)
    finally:
        telegram.close()
    return caught.value


def test_token_never_appears_in_errors_or_reprs(sandbox: RunningSandbox) -> None:
    # Given distinctive tokens (one registered, one not) and a blocked chat
    token, unknown = "555555:AAH-secret-token-value", "666666:AAH-other-secret"
    admin(sandbox, "tokens", {"token": token})
    admin(sandbox, "chats", {"chat_id": 13, "state": "blocked"})

    # When every kind of failure is provoked
    errors = [
        failure_of(TelegramClient.get_me, f"http://127.0.0.1:{free_port()}", token),
        failure_of(lambda t: t.send_message(13, "hello"), sandbox.url, token),
        failure_of(lambda t: t.send_message(14, "<b>"), sandbox.url, token),
        failure_of(TelegramClient.get_me, sandbox.url, unknown),
    ]
    admin(sandbox, "faults", {"server_error": {"count": 1}})
    errors.append(failure_of(lambda t: t.send_message(15, "hello"), sandbox.url, token))
    admin(sandbox, "faults", {"latency_ms": 5000})
    errors.append(failure_of(TelegramClient.get_me, sandbox.url, token, timeout_s=0.2))

    # Then no message, description or repr carries either token
    assert [type(e) for e in errors] == [
        TelegramUnavailable,
        TelegramChatUnavailable,
        TelegramBadRequest,
        TelegramAuthError,
        TelegramUnavailable,
        TelegramUnavailable,
    ]
    for error in errors:
        for text in (str(error), repr(error), error.description):
            assert "secret" not in text
    assert "secret" not in repr(TelegramClient(sandbox.url, token))
