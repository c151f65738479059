"""Telegram wire format for the sandbox: replies and error envelopes, chat objects, and the
validation of ``sendMessage`` parameters (chat id, text length after HTML parsing, parse mode,
inline keyboards) exactly as CONTRACTS.md describes."""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

DEFAULT_TOKEN = "100000:sandbox-bot-token"
MAX_TEXT_CHARS = 4096
MAX_CALLBACK_DATA_BYTES = 64
PARSE_MODES = {"html": "HTML", "markdownv2": "MarkdownV2", "markdown": "Markdown"}
METHODS = {"getme": "getMe", "sendmessage": "sendMessage"}
CHAT_STATES: dict[str, tuple[int, str]] = {
    "blocked": (403, "Forbidden: bot was blocked by the user"),
    "deactivated": (403, "Forbidden: user is deactivated"),
    "kicked": (403, "Forbidden: bot was kicked from the group chat"),
    "not_found": (400, "Bad Request: chat not found"),
    "migrated": (400, "Bad Request: group chat was upgraded to a supergroup chat"),
}
HTML_TAGS = frozenset(
    {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "tg-spoiler", "span", "tg-emoji"}
    | {"a", "code", "pre", "blockquote"}
)
_TAG = re.compile(r"<(?P<close>/?)(?P<name>[A-Za-z0-9_-]*)(?P<attrs>[^<>]*)(?P<end>>?)")
_HTML_ENTITY = re.compile(r"&(lt|gt|amp|quot|#\d+|#x[0-9a-fA-F]+);")
_ENTITY_CHARS = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
INT_ID = re.compile(r"-?\d+")
_USERNAME = re.compile(r"@[A-Za-z][A-Za-z0-9_]{3,31}")
_SUPERGROUP_FLOOR = -1_000_000_000_000
BOT_FIELDS = {"is_bot": True, "first_name": "Sandbox Bot", "username": "sandbox_bot"}


@dataclass(frozen=True)
class ApiReply:
    """One Bot API answer: HTTP status, JSON envelope and extra headers (``Retry-After``)."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


class ApiError(Exception):
    """Raised inside a handler; becomes Telegram's error envelope."""

    def __init__(self, status: int, description: str, **parameters: int) -> None:
        super().__init__(description)
        self.status, self.description, self.parameters = status, description, parameters

    def reply(self) -> ApiReply:
        body: dict[str, Any] = {"ok": False, "error_code": self.status, "description": self.description}
        if self.parameters:
            body["parameters"] = self.parameters
        retry_after = self.parameters.get("retry_after")
        headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
        return ApiReply(self.status, body, headers)


def rate_limited(retry_after_s: int) -> ApiError:
    """Telegram's 429 with ``retry_after`` in the body (the reply adds the header)."""
    return ApiError(429, f"Too Many Requests: retry after {retry_after_s}", retry_after=retry_after_s)


def chat_object(chat_id: Any) -> dict[str, Any]:
    """The Chat for a ``chat_id`` parameter (int, numeric string or "@name"), or a 400."""
    if chat_id is None or chat_id == "":
        raise ApiError(400, "Bad Request: chat_id is empty")
    text = str(chat_id).strip() if isinstance(chat_id, int | str) and not isinstance(chat_id, bool) else ""
    if INT_ID.fullmatch(text) and int(text) != 0:
        number = int(text)
        if number > 0:
            return {"id": number, "type": "private", "first_name": "Sandbox User"}
        kind = "supergroup" if number <= _SUPERGROUP_FLOOR else "group"
        return {"id": number, "type": kind, "title": f"Sandbox {kind}"}
    if _USERNAME.fullmatch(text):
        number = _SUPERGROUP_FLOOR - zlib.crc32(text.lower().encode()) % 1_000_000_000
        return {"id": number, "type": "channel", "title": text[1:], "username": text[1:]}
    raise ApiError(400, "Bad Request: chat not found")


def html_to_plain(text: str) -> str:
    """The visible text of an HTML-mode message, or Telegram's "can't parse entities" 400."""
    stack: list[str] = []
    pieces: list[str] = []
    position = 0
    for tag in _TAG.finditer(text):
        pieces.append(text[position : tag.start()])
        position = tag.end()
        _check_tag(text, tag, stack)
    if stack:
        raise _entities_error(f'Can\'t find end tag corresponding to start tag "{stack[-1]}"')
    pieces.append(text[position:])
    return _HTML_ENTITY.sub(_unescape, "".join(pieces))


def _check_tag(text: str, tag: re.Match[str], stack: list[str]) -> None:
    name, offset = tag["name"].lower(), len(text[: tag.start()].encode())
    if not tag["close"]:
        if name not in HTML_TAGS:
            raise _entities_error(f'Unsupported start tag "{name}" at byte offset {offset}')
        if not tag["end"]:
            raise _entities_error(f"Unclosed start tag at byte offset {offset}")
        stack.append(name)
    elif not tag["end"]:
        raise _entities_error(f"Unclosed end tag at byte offset {offset}")
    elif not stack:
        raise _entities_error(f"Unexpected end tag at byte offset {offset}")
    elif stack[-1] != name:
        raise _entities_error(
            f'Unmatched end tag at byte offset {offset}, expected "</{stack[-1]}>", found "</{name}>"'
        )
    else:
        stack.pop()


def _entities_error(detail: str) -> ApiError:
    return ApiError(400, f"Bad Request: can't parse entities: {detail}")


def _unescape(entity: re.Match[str]) -> str:
    name = entity[1]
    if name.startswith("#x"):
        return chr(int(name[2:], 16))
    return chr(int(name[1:])) if name.startswith("#") else _ENTITY_CHARS[name]


def parse_send_message(params: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """The Chat and the visible text of a ``sendMessage`` call, or the 400 Telegram would give."""
    chat = chat_object(params.get("chat_id"))
    raw = params.get("text")
    mode = params.get("parse_mode") or ""
    if not isinstance(mode, str) or (mode and mode.lower() not in PARSE_MODES):
        raise ApiError(400, "Bad Request: unsupported parse_mode")
    text = str(raw) if raw is not None else ""
    if mode.lower() == "html":
        text = html_to_plain(text)
    text = text.strip()
    if not text:
        raise ApiError(400, "Bad Request: message text is empty")
    if len(text) > MAX_TEXT_CHARS:
        raise ApiError(400, "Bad Request: message is too long")
    _check_reply_markup(params.get("reply_markup"))
    return chat, text


def _check_reply_markup(markup: Any) -> None:
    try:
        if isinstance(markup, str):
            markup = json.loads(markup)
        rows = [] if markup is None else markup.get("inline_keyboard", [])
        buttons = [button for row in rows for button in row]
        datas = [button["callback_data"] for button in buttons if "callback_data" in button]
    except (ValueError, AttributeError, TypeError) as e:
        raise ApiError(400, "Bad Request: can't parse reply keyboard markup JSON object") from e
    for data in datas:
        if not isinstance(data, str) or not 1 <= len(data.encode()) <= MAX_CALLBACK_DATA_BYTES:
            raise ApiError(400, "Bad Request: BUTTON_DATA_INVALID")
