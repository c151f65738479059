"""What the dashboard shows of a dead letter or a job, made readable by a person: JSON indented with
its long strings and lists folded, a traceback with its failing line marked, empty fields left out.

Pure functions returning escaped HTML (:class:`~markupsafe.Markup`); no script is needed. A folded
value is an HTML ``<details>`` element: its start shows, the rest opens on a click. Templates style
``div.json``, ``details.fold``, ``mark.frame`` and ``mark.exception``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from markupsafe import Markup, escape

from worker_app.web.moments import moment

FOLD_CHARS = 120
"""A string longer than this shows its first ``FOLD_CHARS`` characters and folds the full value."""
FOLD_ITEMS = 20
"""A list longer than this shows its first ``SHOWN_ITEMS`` items and folds the rest."""
SHOWN_ITEMS = 10
MAX_DEPTH = 40
"""Deeper nesting is shown as compact JSON (a page must not fail on a pathological message)."""
OWN_PACKAGES = ("actors", "worker_app", "scheduler", "models", "sandbox", "tests")
"""Top-level packages of this project: a traceback frame in one of them is the project's own code,
also where the image installs them (``site-packages/actors/...``)."""

_FRAME = re.compile(r'^\s*File "(?P<path>[^"]*)", line \d+, in ')
_INSTALLED = re.compile(r"/(?:site|dist)-packages/(?P<top>[^/]+)")
_STDLIB = re.compile(r"/lib/python\d+\.\d+/")
_TRACEBACK_START = "Traceback (most recent call last):"


def is_empty(value: Any) -> bool:
    """``None``, ``""``, ``b""``, ``{}`` or ``[]``: a field a detail view leaves out."""
    return value is None or (isinstance(value, str | bytes | dict | list | tuple) and len(value) == 0)


def folded_text(text: str, limit: int = FOLD_CHARS) -> Markup:
    """``text`` escaped; beyond ``limit`` characters, its start and a ``<details>`` with it whole."""
    if len(text) <= limit:
        return escape(text)
    return _fold(escape(text[:limit]), f"… {len(text) - limit} more chars", escape(text))


def _fold(start: str, summary: str, inside: str) -> Markup:
    """``start`` (HTML), then a ``<details>`` named ``summary`` (text) that opens on ``inside`` (HTML)."""
    return Markup('{}<details class="fold"><summary>{}</summary>{}</details>').format(
        Markup(start), summary, Markup(inside)
    )


def pretty_json(value: Any) -> Markup:
    """``value`` as JSON indented by 2 in a ``<div class="json">``: a string longer than
    :data:`FOLD_CHARS` shows its start and folds the full string, a list longer than
    :data:`FOLD_ITEMS` shows :data:`SHOWN_ITEMS` items and folds the others."""
    return Markup('<div class="json">{}</div>').format(Markup(_json(value, 0)))


def _json(value: Any, depth: int) -> str:
    """``value`` as escaped, indented JSON text (HTML); nested ``depth`` levels deep."""
    if depth > MAX_DEPTH:
        return str(folded_text(_compact(value)))
    if isinstance(value, Mapping):
        items = [
            f"{escape(json.dumps(str(k), ensure_ascii=False))}: {_json(v, depth + 1)}{_stamp_note(str(k), v)}"
            for k, v in value.items()
        ]
        return _container("{", "}", items, depth)
    if isinstance(value, list | tuple):
        return _list(list(value), depth)
    if isinstance(value, str):
        encoded = json.dumps(value, ensure_ascii=False)
        if len(value) <= FOLD_CHARS:
            return str(escape(encoded))
        start = escape(json.dumps(value[:FOLD_CHARS], ensure_ascii=False)[:-1])
        return str(_fold(start, f"… {len(value) - FOLD_CHARS} more chars", escape(encoded)))
    return str(escape(json.dumps(value, ensure_ascii=False, default=str)))


def _stamp_note(name: str, value: Any) -> str:
    """After a ``…_at`` number that is a time in epoch milliseconds (as the message options keep
    ``enqueued_at``, ``first_failed_at``…), the moment it names; else nothing."""
    if not name.endswith("_at") or isinstance(value, bool) or not isinstance(value, int | float):
        return ""
    if not 1e12 <= value < 1e13:  # 2001–2286 in milliseconds
        return ""
    return str(Markup(' <small class="stamp">({})</small>').format(moment(value / 1000)))


def _list(values: list[Any], depth: int) -> str:
    items = [_json(v, depth + 1) for v in values]
    if len(items) <= FOLD_ITEMS:
        return _container("[", "]", items, depth)
    inner = "  " * (depth + 1)
    shown = ",\n".join(inner + item for item in items[:SHOWN_ITEMS])
    rest = ",\n".join(inner + item for item in items[SHOWN_ITEMS:])
    folded = _fold("", f"… {len(items) - SHOWN_ITEMS} more items", f",\n{rest}")
    return f"[\n{shown}{folded}\n{'  ' * depth}]"


def _container(opening: str, closing: str, items: list[str], depth: int) -> str:
    if not items:
        return opening + closing
    inner = "  " * (depth + 1)
    body = ",\n".join(inner + item for item in items)
    return f"{opening}\n{body}\n{'  ' * depth}{closing}"


def _compact(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (RecursionError, ValueError):
        return "(nested too deeply to show)"


def preview(value: Any, limit: int = 80) -> str:
    """``value`` as one line of compact JSON, cut at ``limit`` characters with ``…`` (a list's cell);
    ``""`` for an empty value."""
    if is_empty(value):
        return ""
    text = _compact(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def short(text: str | None, limit: int = FOLD_CHARS) -> str:
    """``text`` on one line (each run of whitespace one space), cut at ``limit`` characters with
    ``…`` (a list's cell); ``""`` for none."""
    line = " ".join((text or "").split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def shown_value(value: Any) -> Markup:
    """A field's value for a person: a moment (relative and absolute) for a time, pretty JSON for a
    dict or list, folded text for a long string or a raw body, ``yes``/``no`` for a boolean."""
    if isinstance(value, datetime):
        return moment(value)
    if isinstance(value, Mapping | list | tuple):
        return pretty_json(value)
    if isinstance(value, bytes):
        return folded_text(value.decode(errors="replace"))
    if isinstance(value, bool):
        return Markup("yes" if value else "no")
    if isinstance(value, str):
        return folded_text(value)
    return escape(json.dumps(value, default=str) if isinstance(value, int | float) else str(value))


@dataclass(frozen=True)
class Field:
    """One row of a detail view: ``name`` (the column, for the row's id), ``label``, ``html``."""

    name: str
    label: str
    html: Markup


def fields(values: Mapping[str, Any], first: Sequence[str] = (), skip: Iterable[str] = ()) -> list[Field]:
    """The non-empty ``values`` as detail rows: those named in ``first`` in that order, then the
    others as given; names in ``skip`` and empty values (:func:`is_empty`) are left out."""
    left_out = set(skip)
    ordered = [name for name in first if name in values] + [name for name in values if name not in first]
    return [
        Field(name, name.replace("_", " ").capitalize(), shown_value(values[name]))
        for name in ordered
        if name not in left_out and not is_empty(values[name])
    ]


DEAD_LETTER_FIRST = (
    "status", "queue_name", "actor_name", "reason", "exception_type", "exception_message", "attempts",
    "dead_at", "first_failed_at", "last_failed_at", "args", "kwargs", "options", "raw_body",
)  # fmt: skip
"""A dead letter's fields in the order a person reads them (the others follow as the table has them)."""
JOB_FIRST = (
    "status", "actor_name", "queue_name", "error", "created_at", "started_at", "finished_at", "progress",
    "result", "args", "kwargs",
)  # fmt: skip
"""A job's fields in the order a person reads them."""


def row_fields(row: Any, first: Sequence[str] = (), skip: Iterable[str] = ()) -> list[Field]:
    """:func:`fields` of a model row's columns, as stored (times as datetimes, JSON as data)."""
    return fields({column.name: getattr(row, column.name) for column in row.__table__.columns}, first, skip)


def _is_library(path: str, own: Sequence[str]) -> bool:
    """Whether a traceback frame's ``path`` is outside the project: the standard library, an
    installed third-party package (Dramatiq included) or frozen code."""
    installed = _INSTALLED.search(path)
    if installed is not None:
        return installed.group("top").removesuffix(".py") not in own
    return path.startswith("<") or _STDLIB.search(path) is not None


def _marked_frame(lines: list[str], start: int, own: Sequence[str]) -> int | None:
    """The index of the frame line to mark among ``lines[start:]`` (the last traceback): the last
    frame of the project's own code, else the last frame; ``None`` without one."""
    frames = [(i, found["path"]) for i in range(start, len(lines)) if (found := _FRAME.match(lines[i]))]
    if not frames:
        return None
    own_frames = [i for i, path in frames if not _is_library(path, own)]
    return (own_frames or [i for i, _ in frames])[-1]


def _frame_end(lines: list[str], frame: int) -> int:
    """The index after the frame's block: its line, then its source and caret lines (indented)."""
    end = frame + 1
    while end < len(lines) and lines[end].startswith("    ") and not _FRAME.match(lines[end]):
        end += 1
    return end


def _exception_start(lines: list[str], start: int) -> int | None:
    """The first line of the final exception: the first unindented line after the last frame."""
    frames = [i for i in range(start, len(lines)) if _FRAME.match(lines[i])]
    after = _frame_end(lines, frames[-1]) if frames else start
    return next((i for i in range(after, len(lines)) if lines[i][:1] not in ("", " ")), None)


def highlight_traceback(text: str, own: Sequence[str] = OWN_PACKAGES) -> Markup:
    """``text`` escaped, with the failing frame and the final exception marked: in the last
    traceback of a chain, the innermost frame of the project's own code (``own`` packages; else the
    innermost frame) with its source line in ``<mark class="frame">``, and the final exception line(s)
    in ``<mark class="exception">``."""
    lines = text.rstrip("\n").split("\n")
    starts = [i for i, line in enumerate(lines) if line.startswith(_TRACEBACK_START)]
    last = starts[-1] if starts else 0
    marks: list[tuple[int, int, str]] = []
    frame = _marked_frame(lines, last, own)
    if frame is not None:
        marks.append((frame, _frame_end(lines, frame), "frame"))
    exception = _exception_start(lines, last)
    if exception is not None and (frame is not None or starts):
        marks.append((exception, len(lines), "exception"))
    return _with_marks(lines, marks)


def _with_marks(lines: list[str], marks: list[tuple[int, int, str]]) -> Markup:
    """``lines`` escaped and joined, each ``(start, end, css class)`` range in a ``<mark>``."""
    out: list[str] = []
    i = 0
    for start, end, kind in sorted(marks):
        out += [str(escape(line)) for line in lines[i:start]]
        out.append(str(Markup('<mark class="{}">{}</mark>').format(kind, "\n".join(lines[start:end]))))
        i = end
    out += [str(escape(line)) for line in lines[i:]]
    return Markup("\n".join(out))
