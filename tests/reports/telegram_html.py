"""Telegram's HTML parse mode, checked strictly: a report message is parsed into its plain text and
entities as Telegram's ``parse_html`` does, and every way Telegram would refuse it — or show
something other than meant — fails the check.

python-telegram-bot has no HTML parser (it only renders entities back to HTML:
``Message.text_html``), so this module parses with :mod:`html.parser` following Telegram's rules,
stricter where a report must be: only Telegram's tags and their attributes; every tag closed, in
order; no tag inside ``code``/``pre``; ``&`` only as ``&lt;`` ``&gt;`` ``&amp;`` ``&quot;`` or a
numeric reference; no bare ``<`` or ``>`` in text. Then :func:`check` hands the entities to
python-telegram-bot, renders them back, parses that again and requires the same text and entities
— a check of the UTF-16 offsets Telegram uses — and measures the length Telegram limits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from html.parser import HTMLParser

from telegram import Chat, Message, MessageEntity

MAX_CHARS = 4096
ENTITY_TYPES = {
    **dict.fromkeys(("b", "strong"), MessageEntity.BOLD),
    **dict.fromkeys(("i", "em"), MessageEntity.ITALIC),
    **dict.fromkeys(("u", "ins"), MessageEntity.UNDERLINE),
    **dict.fromkeys(("s", "strike", "del"), MessageEntity.STRIKETHROUGH),
    "code": MessageEntity.CODE,
    "pre": MessageEntity.PRE,
    "a": MessageEntity.TEXT_LINK,
    "blockquote": MessageEntity.BLOCKQUOTE,
    "tg-spoiler": MessageEntity.SPOILER,
}
ATTRIBUTES = {"a": {"href"}, "code": {"class"}, "blockquote": {"expandable"}}
_ENTITY = re.compile(r"&(?:lt|gt|amp|quot|#\d+|#x[0-9a-fA-F]+);")


class InvalidHtml(AssertionError):
    """Telegram would refuse the text (or show it otherwise than meant)."""


@dataclass(frozen=True)
class Parsed:
    text: str
    entities: tuple[tuple[str, int, int, str | None], ...]
    """(type, UTF-16 offset, UTF-16 length, url)."""

    @property
    def length(self) -> int:
        return utf16(self.text)


def utf16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.text = ""
        self.open: list[tuple[str, int, str | None]] = []
        self.entities: list[tuple[str, int, int, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in ENTITY_TYPES:
            raise InvalidHtml(f"Unsupported start tag {tag!r}")
        if any(t in ("code", "pre") for t, _, _ in self.open):
            raise InvalidHtml(f"<{tag}> inside <code>/<pre>")
        unknown = {name for name, _ in attrs} - ATTRIBUTES.get(tag, set())
        if unknown:
            raise InvalidHtml(f"attributes {sorted(unknown)} on <{tag}>")
        href = dict(attrs).get("href") if tag == "a" else None
        if tag == "a" and not href:
            raise InvalidHtml("<a> without href")
        self.open.append((tag, utf16(self.text), href))

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open[-1][0] != tag:
            raise InvalidHtml(f"Unmatched end tag </{tag}> (open: {[t for t, _, _ in self.open]})")
        name, start, href = self.open.pop()
        if utf16(self.text) > start:  # Telegram drops an empty entity
            self.entities.append((ENTITY_TYPES[name], start, utf16(self.text) - start, href))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        raise InvalidHtml(f"self-closing tag <{tag}/>")

    def handle_data(self, data: str) -> None:
        if "<" in data or ">" in data:
            raise InvalidHtml(f"unescaped < or > in text: {data[:60]!r}")
        self.text += data

    def handle_entityref(self, name: str) -> None:
        chars = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
        if name not in chars:
            raise InvalidHtml(f"unknown entity &{name};")
        self.text += chars[name]

    def handle_charref(self, name: str) -> None:
        self.text += chr(int(name[1:], 16) if name.lower().startswith("x") else int(name))

    def handle_comment(self, data: str) -> None:
        raise InvalidHtml("HTML comment")

    def handle_decl(self, decl: str) -> None:
        raise InvalidHtml("HTML declaration")

    def unknown_decl(self, data: str) -> None:
        raise InvalidHtml("HTML declaration")


def parse(markup: str, *, strict: bool = True) -> Parsed:
    """Plain text and entities, as Telegram's HTML parse mode gives them; :class:`InvalidHtml` else.
    ``strict=False`` lets a bare ``&`` through, as Telegram does (python-telegram-bot leaves one
    unescaped in an ``href``)."""
    for amp in re.finditer("&", markup if strict else ""):
        if not _ENTITY.match(markup, amp.start()):
            raise InvalidHtml(f"bare & at {amp.start()}: {markup[amp.start() : amp.start() + 20]!r}")
    parser = _Parser()
    parser.feed(markup)
    parser.close()
    if parser.rawdata:
        raise InvalidHtml(f"unparsed rest: {parser.rawdata[:60]!r}")
    if parser.open:
        raise InvalidHtml(f'Can\'t find end tag corresponding to start tag "{parser.open[-1][0]}"')
    entities = tuple(sorted(parser.entities, key=lambda e: (e[1], -e[2])))
    return Parsed(parser.text, entities)


def check(markup: str) -> Parsed:
    """``markup`` parsed, round-tripped through python-telegram-bot, and within Telegram's length."""
    parsed = parse(markup)
    if not parsed.text.strip():
        raise InvalidHtml("message text is empty")
    message = Message(
        1, datetime.now(UTC), Chat(1, Chat.PRIVATE), text=parsed.text,
        entities=tuple(MessageEntity(t, o, n, url=u) for t, o, n, u in parsed.entities),
    )  # fmt: skip
    again = parse(message.text_html, strict=False)
    if again != parsed:
        raise InvalidHtml(f"entities do not survive python-telegram-bot's rendering: {again} != {parsed}")
    if utf16(parsed.text.strip()) > MAX_CHARS:
        raise InvalidHtml(f"message is too long: {utf16(parsed.text.strip())} > {MAX_CHARS}")
    return parsed
