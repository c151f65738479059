"""The sandbox answers exactly as CONTRACTS.md describes the Telegram Bot API, checked over raw HTTP
and with a real third-party client library (python-telegram-bot)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import requests
import telegram
import telegram.error

from sandbox.server import RunningSandbox
from sandbox.telegram import DEFAULT_TOKEN


def bot_url(sandbox: RunningSandbox, method: str, token: str = DEFAULT_TOKEN) -> str:
    return f"{sandbox.url}/bot{token}/{method}"


def admin(sandbox: RunningSandbox, path: str, body: dict[str, Any]) -> requests.Response:
    return requests.post(f"{sandbox.url}/_sandbox/{path}", json=body, timeout=5)


def send(sandbox: RunningSandbox, **params: Any) -> requests.Response:
    return requests.post(bot_url(sandbox, "sendMessage"), json=params, timeout=5)


KEYBOARD = {"inline_keyboard": [[{"text": "Renew", "callback_data": "renew:42"}]]}


@pytest.mark.parametrize(
    "transport",
    [
        lambda url, p: requests.get(url, params=p, timeout=5),
        lambda url, p: requests.post(url, data=p, timeout=5),
        lambda url, p: requests.post(url, json=p, timeout=5),
        lambda url, p: requests.post(url, files={k: (None, str(v)) for k, v in p.items()}, timeout=5),
    ],
    ids=["query-string", "form-urlencoded", "json", "multipart"],
)
def test_parameters_are_accepted_in_every_encoding(sandbox: RunningSandbox, transport: Any) -> None:
    # Given sendMessage parameters, reply_markup as a JSON string as form and query fields carry it
    params = {
        "chat_id": "42",
        "text": "<i>hi</i>",
        "parse_mode": "html",
        "reply_markup": json.dumps(KEYBOARD),
    }

    # When they are sent in this encoding
    response = transport(bot_url(sandbox, "sendMessage"), params)

    # Then Telegram accepts them
    assert response.status_code == 200, response.text
    assert response.json()["result"]["text"] == "hi"


@pytest.mark.parametrize("method", ["getMe", "getme", "GETME", "GetMe"])
def test_method_names_are_case_insensitive(sandbox: RunningSandbox, method: str) -> None:
    response = requests.get(bot_url(sandbox, method), timeout=5)

    assert response.status_code == 200
    assert response.json()["result"]["is_bot"] is True


def test_success_envelope_has_exactly_ok_and_result(sandbox: RunningSandbox) -> None:
    # Given / When a message is sent to a private chat
    response = send(sandbox, chat_id=42, text="hello", parse_mode="HTML")

    # Then the envelope and Message follow the contract
    body = response.json()
    assert (response.status_code, set(body), body["ok"]) == (200, {"ok", "result"}, True)
    message = body["result"]
    assert isinstance(message["message_id"], int)
    assert isinstance(message["date"], int)
    assert (message["chat"]["id"], message["chat"]["type"], message["text"]) == (42, "private", "hello")
    assert response.headers["Content-Type"] == "application/json"


def test_message_ids_increase_per_chat(sandbox: RunningSandbox) -> None:
    ids = [send(sandbox, chat_id=chat, text="x").json()["result"]["message_id"] for chat in (1, 1, 2, 1)]

    assert ids == [1, 2, 1, 3]


@pytest.mark.parametrize(
    ("chat_id", "chat_type"),
    [(42, "private"), (-4242, "group"), (-1001234567890, "supergroup"), ("@cybervpn_news", "channel")],
)
def test_chat_type_follows_the_chat_id(sandbox: RunningSandbox, chat_id: int | str, chat_type: str) -> None:
    assert send(sandbox, chat_id=chat_id, text="x").json()["result"]["chat"]["type"] == chat_type


def test_error_envelope_has_no_parameters_when_there_are_none(sandbox: RunningSandbox) -> None:
    response = send(sandbox, chat_id=42, text="x" * 4097)

    assert response.status_code == 400
    assert response.json() == {
        "ok": False,
        "error_code": 400,
        "description": "Bad Request: message is too long",
    }


def test_rate_limit_sets_retry_after_in_body_and_header(sandbox: RunningSandbox) -> None:
    # Given the next two sends are rate limited
    admin(sandbox, "faults", {"rate_limit": {"count": 2, "retry_after": 5}})

    # When three are sent
    replies = [send(sandbox, chat_id=42, text="x") for _ in range(3)]

    # Then the first two are 429 with the delay in both places, the third succeeds
    assert [r.status_code for r in replies] == [429, 429, 200]
    assert replies[0].json() == {
        "ok": False,
        "error_code": 429,
        "description": "Too Many Requests: retry after 5",
        "parameters": {"retry_after": 5},
    }
    assert replies[0].headers["Retry-After"] == "5"


def test_migrated_group_names_its_new_id(sandbox: RunningSandbox) -> None:
    admin(sandbox, "chats", {"chat_id": -77, "state": "migrated", "migrate_to_chat_id": -10077})

    body = send(sandbox, chat_id=-77, text="x").json()

    assert body["description"] == "Bad Request: group chat was upgraded to a supergroup chat"
    assert body["parameters"] == {"migrate_to_chat_id": -10077}


@pytest.mark.parametrize(
    ("params", "description"),
    [
        ({"text": "x"}, "Bad Request: chat_id is empty"),
        ({"chat_id": 42}, "Bad Request: message text is empty"),
        ({"chat_id": "someone", "text": "x"}, "Bad Request: chat not found"),
        ({"chat_id": 42, "text": "x", "parse_mode": "bbcode"}, "Bad Request: unsupported parse_mode"),
        (
            {"chat_id": 42, "text": "<b>x</i>", "parse_mode": "HTML"},
            "Bad Request: can't parse entities: Unmatched",
        ),
        (
            {"chat_id": 42, "text": "<div>x</div>", "parse_mode": "HTML"},
            "Bad Request: can't parse entities: Uns",
        ),
        ({"chat_id": 42, "text": "a < b", "parse_mode": "HTML"}, "Bad Request: can't parse entities: "),
        (
            {"chat_id": 42, "text": "x", "reply_markup": "{not json"},
            "Bad Request: can't parse reply keyboard",
        ),
    ],
)
def test_invalid_send_is_a_400_with_telegrams_text(
    sandbox: RunningSandbox, params: dict[str, Any], description: str
) -> None:
    response = send(sandbox, **params)

    assert response.status_code == 400
    assert response.json()["description"].startswith(description)


@pytest.mark.parametrize("callback_data", ["", "x" * 65, "é" * 33])
def test_callback_data_must_be_1_to_64_bytes(sandbox: RunningSandbox, callback_data: str) -> None:
    keyboard = {"inline_keyboard": [[{"text": "Go", "callback_data": callback_data}]]}

    response = send(sandbox, chat_id=42, text="x", reply_markup=keyboard)

    assert response.json()["description"] == "Bad Request: BUTTON_DATA_INVALID"


def test_html_length_is_counted_after_parsing(sandbox: RunningSandbox) -> None:
    # Given 4096 visible characters wrapped in tags and written with entities
    text = "<b>" + "&amp;" * 4096 + "</b>"

    # When / Then Telegram accepts it: the limit applies to the visible text
    response = send(sandbox, chat_id=42, text=text, parse_mode="HtMl")
    assert response.status_code == 200
    assert response.json()["result"]["text"] == "&" * 4096


def test_unknown_token_and_unknown_method_answer_401_and_404(sandbox: RunningSandbox) -> None:
    unknown_token = requests.get(bot_url(sandbox, "getMe", token="1:nope"), timeout=5)
    unknown_method = requests.get(bot_url(sandbox, "sendPhotoAlbum"), timeout=5)

    assert (unknown_token.status_code, unknown_token.json()) == (
        401,
        {"ok": False, "error_code": 401, "description": "Unauthorized: invalid token specified"},
    )
    assert (unknown_method.status_code, unknown_method.json()) == (
        404,
        {"ok": False, "error_code": 404, "description": "Not Found: method not found"},
    )


def test_registered_tokens_are_accepted_until_reset(sandbox: RunningSandbox) -> None:
    admin(sandbox, "tokens", {"token": "777:extra-bot"})
    accepted = requests.get(bot_url(sandbox, "getMe", token="777:extra-bot"), timeout=5)
    admin(sandbox, "reset", {})
    forgotten = requests.get(bot_url(sandbox, "getMe", token="777:extra-bot"), timeout=5)

    assert (accepted.status_code, accepted.json()["result"]["id"]) == (200, 777)
    assert forgotten.status_code == 401


def test_rate_limit_fraction_is_deterministic(sandbox: RunningSandbox) -> None:
    # Given a quarter of sends are rate limited
    admin(sandbox, "faults", {"rate_limit_fraction": {"fraction": 0.25, "retry_after": 1}})

    # When eight are sent / Then exactly the 4th and the 8th get 429
    statuses = [send(sandbox, chat_id=i, text="x").status_code for i in range(1, 9)]
    assert statuses == [200, 200, 200, 429, 200, 200, 200, 429]


def test_server_errors_stop_after_their_count(sandbox: RunningSandbox) -> None:
    admin(sandbox, "faults", {"server_error": {"count": 2, "status": 503}})

    statuses = [send(sandbox, chat_id=42, text="x").status_code for _ in range(3)]

    assert statuses == [503, 503, 200]


def test_enforced_per_chat_limit_rejects_a_burst_to_one_chat(sandbox: RunningSandbox) -> None:
    # Given Telegram's flood control at 1 message/s per chat
    admin(sandbox, "faults", {"enforce_limits": {"per_chat_per_s": 1}})

    # When chat 1 gets two messages at once and chat 2 one
    replies = [send(sandbox, chat_id=chat, text="x") for chat in (1, 1, 2)]

    # Then only the repeat to chat 1 is rejected, with a delay
    assert [r.status_code for r in replies] == [200, 429, 200]
    assert replies[1].json()["parameters"]["retry_after"] >= 1
    assert int(replies[1].headers["Retry-After"]) >= 1


def test_enforced_global_limit_rejects_a_burst_across_chats(sandbox: RunningSandbox) -> None:
    # Given Telegram's flood control at 1 message/s overall
    admin(sandbox, "faults", {"enforce_limits": {"global_per_s": 1}})

    # When two chats get a message at once / Then the second is rejected
    assert [send(sandbox, chat_id=chat, text="x").status_code for chat in (1, 2)] == [200, 429]


def test_received_log_and_stats_describe_every_send(sandbox: RunningSandbox) -> None:
    # Given one accepted and one rejected send, and a getMe
    admin(sandbox, "chats", {"chat_id": 9, "state": "blocked"})
    requests.post(bot_url(sandbox, "sendMessage"), json={"chat_id": 8, "text": "ok"}, timeout=5)
    requests.post(
        bot_url(sandbox, "sendMessage"),
        data={"chat_id": "9", "text": "no"},
        headers={"X-Request-ID": "r9"},
        timeout=5,
    )
    requests.get(bot_url(sandbox, "getMe"), timeout=5)

    # When the log and the stats are read
    log = requests.get(f"{sandbox.url}/_sandbox/received", params={"chat_id": "9"}, timeout=5).json()
    stats = requests.get(f"{sandbox.url}/_sandbox/stats", timeout=5).json()

    # Then
    assert [(e["chat_id"], e["text"], e["status"], e["request_id"]) for e in log] == [(9, "no", 403, "r9")]
    assert isinstance(log[0]["received_at"], float)
    assert stats == {
        "total": 3,
        "by_status": {"200": 2, "403": 1},
        "by_method": {"sendMessage": 2, "getMe": 1},
    }


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("faults", {"meteor_strike": True}),
        ("faults", {"rate_limit": {"count": -1}}),
        ("faults", {"server_error": {"count": 1, "status": 404}}),
        ("chats", {"chat_id": 1, "state": "sleepy"}),
        ("tokens", {"token": ""}),
    ],
)
def test_admin_rejects_malformed_settings(sandbox: RunningSandbox, path: str, body: dict[str, Any]) -> None:
    response = admin(sandbox, path, body)

    assert response.status_code == 400
    assert response.json()["ok"] is False


def run_bot(sandbox: RunningSandbox, action: Any) -> Any:
    """Run ``action(bot)`` with a real python-telegram-bot client pointed at the sandbox."""

    async def scenario() -> Any:
        async with telegram.Bot(DEFAULT_TOKEN, base_url=f"{sandbox.url}/bot") as bot:
            return await action(bot)

    return asyncio.run(scenario())


@pytest.fixture
def ptb(monkeypatch: pytest.MonkeyPatch) -> None:
    """Opt python-telegram-bot into its timedelta periods (its int ones emit deprecation warnings)."""
    monkeypatch.setenv("PTB_TIMEDELTA", "true")


@pytest.mark.usefixtures("ptb")
def test_python_telegram_bot_gets_me_and_sends(sandbox: RunningSandbox) -> None:
    # Given a real client library (it calls getMe itself on start-up)
    async def action(bot: telegram.Bot) -> tuple[telegram.User, telegram.Message]:
        return await bot.get_me(), await bot.send_message(chat_id=42, text="<b>hi</b>", parse_mode="HTML")

    # When it sends a message
    me, message = run_bot(sandbox, action)

    # Then it parsed our answers into its own types
    assert (me.id, me.is_bot, me.username) == (100000, True, "sandbox_bot")
    assert (message.message_id, message.chat.id, message.chat.type, message.text) == (1, 42, "private", "hi")


@pytest.mark.usefixtures("ptb")
def test_python_telegram_bot_maps_a_blocked_chat_to_forbidden(sandbox: RunningSandbox) -> None:
    admin(sandbox, "chats", {"chat_id": 42, "state": "blocked"})

    with pytest.raises(telegram.error.Forbidden, match="bot was blocked by the user"):
        run_bot(sandbox, lambda bot: bot.send_message(chat_id=42, text="hi"))


@pytest.mark.usefixtures("ptb")
def test_python_telegram_bot_maps_a_429_to_retry_after(sandbox: RunningSandbox) -> None:
    admin(sandbox, "faults", {"rate_limit": {"count": 1, "retry_after": 3}})

    with pytest.raises(telegram.error.RetryAfter) as caught:
        run_bot(sandbox, lambda bot: bot.send_message(chat_id=42, text="hi"))

    assert caught.value.retry_after.total_seconds() == 3  # type: ignore[union-attr]
