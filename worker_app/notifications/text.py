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

from worker_app.errors import BadMessage

MAX_TEXT_CHARS = 4096
PARSE_MODES = {"html": "HTML", "markdownv2": "MarkdownV2", "markdown": "Markdown"}
_TAG = re.compile(r"<[^<>]*>")


class NotificationRejected(BadMessage):
    """The text or parse mode can never be sent as given (empty, too long, unknown parse mode)."""


def visible_length(text: str, parse_mode: str | None) -> int:
    """Characters Telegram counts: for HTML, the text without tags and with entities decoded."""
    if parse_mode is not None and parse_mode.lower() == "html":
        text = html.unescape(_TAG.sub("", text))
    return len(text.strip())


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
    return int(value)
