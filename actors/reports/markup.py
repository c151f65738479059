"""Telegram HTML for the reports: escaping, a few tags, text charts, and splitting on sections.

A report is a list of *sections*, each a tuple of lines; every line is complete HTML on its own (a
tag opened on a line is closed on it), so a report can be cut between any two lines without
breaking a tag. :func:`split` packs whole sections into messages of at most ``MAX_CHARS``
characters as Telegram counts them (after entity parsing); only a section longer than a message on
its own is cut, between lines, its title repeated on the next part.

Every value that comes from outside — usernames, node names, plan names, alert titles — goes
through :func:`esc`: ``&``, ``<`` and ``>`` escaped, control characters and unpaired surrogates
replaced, and long values shortened *before* escaping (an entity is never cut).
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from decimal import Decimal

from actors.payments.texts import amount_text
from worker_app.telegram.text import MAX_TEXT_CHARS, plain_text

MAX_CHARS = MAX_TEXT_CHARS
#: Room kept in every part for the ``part i/n`` line.
_FOOTER_ROOM = 24
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
BLOCKS = "▁▂▃▄▅▆▇█"
NO_DATA_MARK = "·"
Section = tuple[str, ...]


def esc(value: object, limit: int = 64) -> str:
    """``value`` as safe Telegram HTML text: shortened to ``limit`` characters, then escaped."""
    text = str(value).encode("utf-8", "replace").decode("utf-8")
    text = _CONTROL.sub(" ", text)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return html.escape(text, quote=False)


def b(markup: str) -> str:
    return f"<b>{markup}</b>"


def i(markup: str) -> str:
    return f"<i>{markup}</i>"


def code(markup: str) -> str:
    return f"<code>{markup}</code>"


def visible_length(markup: str) -> int:
    """Characters Telegram counts in ``markup`` after entity parsing, in UTF-16 code units (what
    Telegram's entity offsets use; never fewer than its character count)."""
    return len(plain_text(markup, "HTML").encode("utf-16-le")) // 2


def sparkline(values: Sequence[float | None]) -> str:
    """``▁▃█·▅``: one block per value, scaled from 0 to the largest; ``·`` for a value missing."""
    top = max((v for v in values if v is not None), default=0.0)
    marks = []
    for value in values:
        if value is None:
            marks.append(NO_DATA_MARK)
        else:
            marks.append(BLOCKS[min(7, round(value / top * 7)) if top > 0 else 0])
    return "".join(marks)


def bar(value: float, top: float, width: int = 10) -> str:
    """``██████░░░░``: ``value`` against ``top`` in ``width`` cells."""
    filled = min(width, round(value / top * width)) if top > 0 else 0
    return "█" * filled + "░" * (width - filled)


def size(n_bytes: float) -> str:
    """Bytes in binary units: ``1.5 GiB``."""
    value = float(n_bytes)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def amount(value: Decimal) -> str:
    """``Decimal('15.50000000')`` → ``15.5`` (never an exponent)."""
    return amount_text(value) if value.is_finite() else str(value)


def money(by_currency: dict[str, Decimal]) -> str:
    """``15 USDT, 1.25 TON`` (currencies never added together); ``0`` when there is none."""
    if not by_currency:
        return "0"
    return ", ".join(f"{amount(v)} {esc(c, 12)}" for c, v in sorted(by_currency.items()))


def change(current: float | None, previous: float | None) -> str:
    """``▲ +12.5 %`` / ``▼ -8.0 %`` against ``previous``; says so when either is unknown."""
    if current is None or previous is None:
        return "no data to compare"
    if previous == 0:
        return "new" if current > 0 else "±0 %"
    pct = (current - previous) / previous * 100
    if abs(pct) < 0.05:
        return "±0 %"
    return f"▲ +{pct:.1f} %" if pct > 0 else f"▼ {pct:.1f} %"


def percent_change(current: float | None, previous: float | None) -> float | None:
    """The change in %, ``None`` when it cannot be computed (unknown, or from zero)."""
    if current is None or previous is None or previous == 0:
        return None
    return (current - previous) / previous * 100


def duration(seconds: float) -> str:
    """``3 h 05 min`` / ``12 min``."""
    minutes = round(seconds / 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min"


def split(sections: Sequence[Section], limit: int = MAX_CHARS) -> list[str]:
    """The report as messages of at most ``limit`` visible characters each, cut between sections
    (a section alone longer than that between its lines); numbered ``part i/n`` when more than one."""
    budget = limit - _FOOTER_ROOM
    parts: list[str] = []
    current = ""
    for section in sections:
        text = "\n".join(section)
        joined = f"{current}\n\n{text}" if current else text
        if visible_length(joined) <= budget:
            current = joined
            continue
        if current:
            parts.append(current)
        if visible_length(text) <= budget:
            current = text
            continue
        *whole, current = _cut(section, budget)
        parts += whole
    if current:
        parts.append(current)
    if len(parts) > 1:
        parts = [f"{p}\n\n{i(f'part {n}/{len(parts)}')}" for n, p in enumerate(parts, 1)]
    return parts


def _cut(section: Section, budget: int) -> list[str]:
    """A section too long for one message, cut between lines; its title starts every piece."""
    title, *lines = section
    pieces: list[str] = []
    current = title
    for line in lines:
        if visible_length(line) + visible_length(title) + 16 > budget:
            raise ValueError(f"a report line is longer than a message: {line[:80]!r}…")
        if visible_length(f"{current}\n{line}") > budget:
            pieces.append(current)
            current = f"{title} {i('(continued)')}"
        current = f"{current}\n{line}"
    pieces.append(current)
    return pieces
