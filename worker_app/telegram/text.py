"""Checks on a notification's text before it costs a Telegram call.

Over-long text is **rejected, not split**: Telegram counts 4096 characters *after* entity parsing,
and cutting HTML at an arbitrary point breaks its tags (Telegram then rejects every part), while
splitting on paragraphs changes what the backend wrote. The backend owns the wording; it gets a
clear error naming the length instead. The same rule fails a too-long ``notification_queue`` row
at once, without a Telegram call.
"""

from __future__ import annotations

import html
import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, WithJsonSchema

from worker_app.arguments import NO_NUL_SCHEMA, NoNul
from worker_app.errors import BadMessage

MAX_TEXT_CHARS = 4096
#: The raw text's cap, markup included: Telegram counts 4096 characters after parsing, so markup may
#: add to that, but not without bound (a 10 MB "message" is refused before it reaches a queue).
MAX_RAW_TEXT_CHARS = 32_768
PARSE_MODES = {"html": "HTML", "markdownv2": "MarkdownV2", "markdown": "Markdown"}
_TAG = re.compile(r"<[^<>]*>")
#: The ``bigint`` column's range: a chat id outside it can never be stored or sent.
CHAT_ID_MIN, CHAT_ID_MAX = -(2**63), 2**63 - 1


def _parse_mode_name(value: Any) -> Any:
    """``html`` → ``HTML``: parse modes are matched without regard to case, as the worker always did."""
    return PARSE_MODES.get(value.lower(), value) if isinstance(value, str) else value


# The argument types of the notification actors: the API and the worker validate them (pydantic).
ChatId = Annotated[int, Field(ge=CHAT_ID_MIN, le=CHAT_ID_MAX)]
MessageText = Annotated[
    str, Field(min_length=1, max_length=MAX_RAW_TEXT_CHARS, json_schema_extra=NO_NUL_SCHEMA), NoNul
]
NotificationType = Annotated[str, Field(min_length=1, max_length=64, json_schema_extra=NO_NUL_SCHEMA), NoNul]
ParseMode = Annotated[
    Literal["HTML", "MarkdownV2", "Markdown"] | None,
    BeforeValidator(_parse_mode_name),
    WithJsonSchema(
        {
            "anyOf": [{"type": "string"}, {"type": "null"}],
            "description": "HTML, MarkdownV2 or Markdown (any case)",
        }
    ),
]


class NotificationRejected(BadMessage):
    """The text or parse mode can never be sent as given (empty, too long, unknown parse mode)."""


def plain_text(text: str, parse_mode: str | None) -> str:
    """What Telegram shows of ``text``: for HTML, without tags and with entities decoded; stripped."""
    if parse_mode is not None and parse_mode.lower() == "html":
        text = html.unescape(_TAG.sub("", text))
    return text.strip()


def visible_length(text: str, parse_mode: str | None) -> int:
    """Characters Telegram counts: for HTML, the text without tags and with entities decoded."""
    return len(plain_text(text, parse_mode))


def check_text(text: str, parse_mode: str | None) -> str | None:
    """The parse mode as Telegram spells it; raises :class:`NotificationRejected` when unsendable."""
    if not isinstance(text, str):
        raise NotificationRejected(f"message must be a string, got {type(text).__name__}")
    mode = None
    if parse_mode is not None:
        mode = PARSE_MODES.get(str(parse_mode).lower())
        if mode is None:
            raise NotificationRejected(
                f"parse_mode {parse_mode!r} is not one of {sorted(PARSE_MODES.values())} (or None)"
            )
    length = visible_length(text, mode)
    if length == 0:
        raise NotificationRejected("message is empty")
    if length > MAX_TEXT_CHARS:
        raise NotificationRejected(
            f"message is {length} characters after formatting; Telegram allows {MAX_TEXT_CHARS}. "
            "It is rejected, not split: shorten it or send it as several notifications"
        )
    return mode


def check_type(notification_type: str) -> str:
    """``notification_type`` if it fits the column (1-64 characters); else :class:`NotificationRejected`."""
    if not isinstance(notification_type, str) or not 1 <= len(notification_type.strip()) <= 64:
        raise NotificationRejected(f"notification_type must be 1-64 characters, got {notification_type!r}")
    return notification_type.strip()


def check_chat_id(value: object, name: str = "telegram_id") -> int:
    """``value`` as an integer chat id (ints and numeric strings); else :class:`NotificationRejected`
    naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).lstrip("-").isdigit():
        raise NotificationRejected(f"{name} = {value!r} is not an integer chat id")
    if not CHAT_ID_MIN <= int(value) <= CHAT_ID_MAX:
        raise NotificationRejected(f"{name} = {value!r} is out of range (a chat id fits in 64 bits)")
    return int(value)
