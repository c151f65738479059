"""Telegram Bot API client (sending side): ``getMe`` and ``sendMessage``.

Calls ``{base_url}/bot{token}/{method}`` with JSON bodies and sorts every failure into the error tree
the retry middleware acts on (CONTRACTS.md, Telegram section):

* 429 → :class:`TelegramRateLimited` with Telegram's ``retry_after`` (honour it fleet-wide);
* 403 blocked / deactivated / kicked and 400 "chat not found" → :class:`TelegramChatUnavailable`
  (this chat is gone for good: mark the notification failed, do not retry);
* other 400s (empty, too long, bad HTML) → :class:`TelegramBadRequest` (this message is broken);
* 401 / 404 → :class:`TelegramAuthError` (wrong token or base URL: fix the configuration);
* 5xx, connection errors, timeouts, malformed replies → :class:`TelegramUnavailable` (retry).

A 400 carrying ``parameters.migrate_to_chat_id`` (a group upgraded to a supergroup) is followed once.
The token is part of the URL path; it never appears in a message, a repr or a log line from here.

``sendMessage`` has its own, short timeout (TELEGRAM_SEND_TIMEOUT_S, 3 s by default; other calls use
HTTP_TIMEOUT_S). Telegram answers a send in well under a second, and a hanging Telegram must turn
into failures quickly: the circuit breaker can only open on failures, and it has to open within 5 s
of an outage. The price: a send that Telegram accepts after more than 3 s is reported as a timeout,
retried, and the user may get that message twice — delivery is at-least-once anyway.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from worker_app.clients.http import JsonHttpClient
from worker_app.errors import PermanentError, RateLimited, UpstreamUnavailable, WorkerError

DEFAULT_RETRY_AFTER_S = 1.0
"""Used when a 429 names no delay in its body or its ``Retry-After`` header."""
DEFAULT_SEND_TIMEOUT_S = 3.0
"""TELEGRAM_SEND_TIMEOUT_S's default: connect and read timeout of ``sendMessage`` (see above)."""

_CHAT_LEVEL_400 = (
    "chat not found",
    "user not found",
    "peer_id_invalid",
    "group chat was upgraded",
    "have no rights to send",
    "not enough rights",
    "chat_write_forbidden",
)


class TelegramError(WorkerError):
    """Base of every error :class:`TelegramClient` raises.

    ``error_code`` is Telegram's code (the HTTP status), ``None`` when no reply arrived;
    ``description`` is Telegram's own text (redacted), e.g. "Forbidden: bot was blocked by the user".
    """

    def __init__(self, message: str, *, error_code: int | None, description: str) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.description = description


class TelegramRateLimited(TelegramError, RateLimited):
    """429 Too Many Requests: every sender must pause ``retry_after_s`` seconds; not a failed attempt."""

    def __init__(
        self, message: str, *, error_code: int | None, description: str, retry_after_s: float
    ) -> None:
        RateLimited.__init__(self, message, retry_after_s=retry_after_s)
        self.error_code = error_code
        self.description = description


class TelegramChatUnavailable(TelegramError, PermanentError):
    """The chat cannot receive messages from this bot (blocked, deactivated, kicked, not found)."""


class TelegramChatMigrated(TelegramChatUnavailable):
    """The group became a supergroup; ``migrate_to_chat_id`` is its new id.

    :meth:`TelegramClient.send_message` follows it once by itself; callers only see it when the new
    chat migrated again, which is then permanent like any other unavailable chat.
    """

    def __init__(
        self, message: str, *, error_code: int | None, description: str, migrate_to_chat_id: int
    ) -> None:
        super().__init__(message, error_code=error_code, description=description)
        self.migrate_to_chat_id = migrate_to_chat_id


class TelegramBadRequest(TelegramError, PermanentError):
    """Telegram rejected this message itself (empty, too long, unparsable HTML, bad keyboard)."""


class TelegramAuthError(TelegramError, PermanentError):
    """401/404: the bot token or the API base URL is wrong; every send will fail until config is fixed."""


class TelegramUnavailable(TelegramError, UpstreamUnavailable):
    """Telegram did not answer usefully (5xx, connection error, timeout, malformed reply); transient."""


@dataclass(frozen=True)
class SentMessage:
    """What Telegram accepted: its message id, the chat it landed in and its unix send time.

    ``migrated_from`` is the old group id when the send followed a group → supergroup migration;
    callers should then store ``chat_id`` as the chat's new id.
    """

    message_id: int
    chat_id: int
    date: int
    migrated_from: int | None = None


class TelegramClient:
    """Sends bot messages over the Telegram Bot API; thread-safe, one pooled session per client."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout_s: float = 10.0,
        send_timeout_s: float = DEFAULT_SEND_TIMEOUT_S,
    ) -> None:
        self._token = token
        self.send_timeout_s = min(send_timeout_s, timeout_s)
        self._http = JsonHttpClient(
            "telegram", base_url, timeout_s=timeout_s, secrets=(token,), unavailable=_unavailable
        )

    def __repr__(self) -> str:
        return f"TelegramClient(base_url={self._http.base_url!r})"

    def close(self) -> None:
        """Close the pooled connections."""
        self._http.close()

    def get_me(self) -> dict[str, Any]:
        """The bot's own User object; a cheap probe that the token and the API are fine."""
        result = self._call("getMe", {})
        if not isinstance(result, dict):
            raise _malformed("getMe", result)
        return result

    def send_message(
        self,
        chat_id: int | str,
        text: str,
        *,
        parse_mode: str | None = "HTML",
        disable_notification: bool = False,
        reply_markup: dict[str, Any] | None = None,
    ) -> SentMessage:
        """Send ``text`` to ``chat_id`` (an int or "@channel"), following one chat migration."""
        payload: dict[str, Any] = {"chat_id": chat_id, "text": text}
        if parse_mode is not None:
            payload["parse_mode"] = parse_mode
        if disable_notification:
            payload["disable_notification"] = True
        if reply_markup is not None:
            payload["reply_markup"] = reply_markup
        try:
            return _sent_message(self._call("sendMessage", payload, self.send_timeout_s))
        except TelegramChatMigrated as moved:
            payload["chat_id"] = moved.migrate_to_chat_id
            sent = _sent_message(self._call("sendMessage", payload, self.send_timeout_s))
            return SentMessage(sent.message_id, sent.chat_id, sent.date, migrated_from=_int_or_none(chat_id))

    def _call(self, method: str, payload: dict[str, Any], timeout_s: float | None = None) -> Any:
        reply = self._http.request("POST", f"/bot{self._token}/{method}", json=payload, timeout_s=timeout_s)
        envelope = reply.body
        if not isinstance(envelope, dict) or not isinstance(envelope.get("ok"), bool):
            raise _malformed(method, envelope)
        if envelope["ok"]:
            if "result" not in envelope:
                raise _malformed(method, envelope)
            return envelope["result"]
        raise _classify(method, reply.status, envelope, reply.headers, self._http.redact)


def _classify(
    method: str,
    status: int,
    envelope: Mapping[str, Any],
    headers: Mapping[str, str],
    redact: Callable[[str], str],
) -> TelegramError:
    code = envelope.get("error_code")
    code = code if isinstance(code, int) else status
    description = redact(str(envelope.get("description") or f"HTTP {status}"))
    params = envelope.get("parameters")
    params = params if isinstance(params, dict) else {}
    message = f"telegram {method} failed: {code} {description}"
    fields: dict[str, Any] = {"error_code": code, "description": description}
    if code == 429:
        return TelegramRateLimited(message, **fields, retry_after_s=_retry_after_s(params, headers))
    if isinstance(params.get("migrate_to_chat_id"), int):
        return TelegramChatMigrated(message, **fields, migrate_to_chat_id=params["migrate_to_chat_id"])
    if code == 403 or (code == 400 and _is_chat_level(description)):
        return TelegramChatUnavailable(message, **fields)
    if code in (401, 404):
        return TelegramAuthError(message, **fields)
    if code >= 500:
        return TelegramUnavailable(message, **fields)
    return TelegramBadRequest(message, **fields)


def _is_chat_level(description: str) -> bool:
    lowered = description.lower()
    return any(marker in lowered for marker in _CHAT_LEVEL_400)


def _retry_after_s(params: Mapping[str, Any], headers: Mapping[str, str]) -> float:
    for candidate in (params.get("retry_after"), headers.get("Retry-After")):
        seconds = _seconds(candidate)
        if seconds is not None:
            return seconds
    return DEFAULT_RETRY_AFTER_S


def _seconds(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return max(float(value), 0.0)
    if isinstance(value, str) and value.strip().isdigit():
        return float(value.strip())
    return None


def _sent_message(result: Any) -> SentMessage:
    try:
        fields = (result["message_id"], result["chat"]["id"], result["date"])
    except (TypeError, KeyError) as e:
        raise _malformed("sendMessage", result) from e
    if not all(isinstance(f, int) and not isinstance(f, bool) for f in fields):
        raise _malformed("sendMessage", result)
    message_id, chat_id, date = fields
    return SentMessage(message_id=message_id, chat_id=chat_id, date=date)


def _malformed(method: str, body: Any) -> TelegramUnavailable:
    shape = type(body).__name__
    description = f"malformed reply to {method}: got a {shape} without the expected fields"
    return TelegramUnavailable(f"telegram {description}", error_code=None, description=description)


def _unavailable(message: str, status: int | None) -> UpstreamUnavailable:
    return TelegramUnavailable(message, error_code=status, description=message)


def _int_or_none(chat_id: int | str) -> int | None:
    try:
        return int(chat_id)
    except ValueError:
        return None
