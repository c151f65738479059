"""Pages of a list shown newest first (the dashboard's dead letters and jobs): 50 rows at a time,
with "Newer" / "Older" links and "1–50 of N".

Keyset pagination, not ``OFFSET``: a page is "the 50 rows just older (or newer) than this one",
found through the index on the list's time column whatever the page's depth, and a row arriving
meanwhile does not shift the page under the reader. A link carries its anchor row as a cursor,
``<time in µs since the epoch>_<id>``, so the anchor may be deleted meanwhile. The rows are ordered
by ``(time, id)`` descending; the id breaks ties between rows written at the same moment.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar
from urllib.parse import urlencode

from sqlalchemy import ColumnElement, Select, and_, func, or_, select

from worker_app.db import Database

PAGE_SIZE = 50
T = TypeVar("T")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True)
class Cursor:
    """A row's place in the order: its time and id."""

    at: datetime
    key: Any

    def __str__(self) -> str:
        return f"{(self.at - _EPOCH) // _MICROSECOND}_{self.key}"


def parse_cursor(text: str, key: Callable[[str], Any]) -> Cursor:
    """The cursor written by ``str(Cursor)``; ``key`` converts (and checks) the id. Raises
    ``ValueError`` for anything else."""
    micros, _, rest = text.partition("_")
    if not (micros.isascii() and micros.isdigit() and len(micros) <= 17 and rest):
        raise ValueError("not a page position")
    return Cursor(_EPOCH + int(micros) * _MICROSECOND, key(rest))


def bigint_key(text: str) -> int:
    """A cursor's id that is a positive ``bigint`` (a dead letter's)."""
    if not (text.isascii() and text.isdigit() and len(text) <= 19 and 0 < int(text) < 2**63):
        raise ValueError(text)
    return int(text)


def text_key(text: str) -> str:
    """A cursor's id that is text of at most 64 characters without NUL (a job's)."""
    if len(text) > 64 or "\x00" in text:
        raise ValueError(text)
    return text


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page: ``rows`` newest first; ``first`` is the position of ``rows[0]`` (1-based; 0 when
    there are none); ``total`` the matches (at least that many when ``total_capped``); ``newer``
    and ``older`` the cursors of the links (``""``: the first page; ``None``: no link)."""

    rows: list[T]
    first: int
    total: int
    total_capped: bool
    newer: str | None
    older: str | None

    @property
    def last(self) -> int:
        """The position of the page's last row."""
        return self.first + len(self.rows) - 1 if self.rows else 0


@dataclass(frozen=True)
class Order:
    """The columns a list is ordered by, newest first: its time and its unique id."""

    at: Any
    key: Any

    def cursor(self, row: Any) -> Cursor:
        return Cursor(getattr(row, self.at.key), getattr(row, self.key.key))

    def newer(self, c: Cursor) -> ColumnElement[bool]:
        """Rows after ``c`` in time (the first term alone is what the time column's index serves)."""
        return and_(self.at >= c.at, or_(self.at > c.at, self.key > c.key))

    def older(self, c: Cursor) -> ColumnElement[bool]:
        return and_(self.at <= c.at, or_(self.at < c.at, self.key < c.key))


def _count(s: Any, query: Select[Any], cap: int | None) -> int:
    counted = query.order_by(None)
    if cap is not None:
        counted = counted.limit(cap + 1)
    return int(s.scalar(select(func.count()).select_from(counted.subquery())) or 0)


def keyset_page(
    database: Database, query: Select[Any], order: Order, *, older_than: Cursor | None = None,
    newer_than: Cursor | None = None, size: int = PAGE_SIZE, total: int | None = None,
    count_cap: int | None = None,
) -> Page[Any]:  # fmt: skip
    """The page of ``query``'s rows just older than ``older_than``, just newer than ``newer_than``
    (the first page when fewer than ``size`` rows are newer), or else the first page. ``total`` is
    the number of matches when the caller knows it; otherwise they are counted, up to ``count_cap``
    (beyond it the page says ``total_capped``)."""
    with database.new_session() as s:
        rows = _newer_rows(s, query, order, newer_than, size) if newer_than is not None else []
        anchored = more_older = bool(rows)  # older rows: at least the one the link came from
        if not rows:
            anchor = older_than if newer_than is None else None
            bounded = query if anchor is None else query.where(order.older(anchor))
            found = list(s.scalars(bounded.order_by(order.at.desc(), order.key.desc()).limit(size + 1)))
            rows, more_older, anchored = found[:size], len(found) > size, anchor is not None and bool(found)
        first = 1 + _count(s, query.where(order.newer(order.cursor(rows[0]))), None) if anchored else 1
        if total is None:
            total = len(rows) if first == 1 and not more_older else _count(s, query, count_cap)
    capped = count_cap is not None and total > count_cap
    newer = str(order.cursor(rows[0])) if first > 1 else None
    return Page(
        rows=rows, first=first if rows else 0, total=count_cap if capped and count_cap else total,
        total_capped=capped, newer="" if not rows and older_than is not None else newer,
        older=str(order.cursor(rows[-1])) if rows and more_older else None,
    )  # fmt: skip


def _newer_rows(s: Any, query: Select[Any], order: Order, after: Cursor, size: int) -> list[Any]:
    """The ``size`` rows just newer than ``after``, newest first; none when fewer than ``size`` are
    newer (the first page shows those)."""
    found = list(s.scalars(query.where(order.newer(after)).order_by(order.at, order.key).limit(size + 1)))
    return found[:size][::-1] if len(found) > size else []


def cursors(args: Mapping[str, str], key: Callable[[str], Any]) -> dict[str, Cursor | None]:
    """The ``older`` and ``newer`` cursors of a request's ``args`` as :func:`keyset_page` takes
    them (``older_than``, ``newer_than``). Raises ``ValueError`` naming the bad one."""
    found: dict[str, Cursor | None] = {}
    for name in ("older", "newer"):
        value = args.get(name)
        try:
            found[f"{name}_than"] = parse_cursor(value, key) if value else None
        except (ValueError, OverflowError):
            raise ValueError(f"{name}: not a page position") from None
    return found


def links(page: Page[Any], path: str, args: Iterable[tuple[str, str]]) -> dict[str, str | None]:
    """The ``newer`` and ``older`` links of ``page``: ``path`` with the request's other non-empty
    ``args`` (its filters) and the link's cursor (none for the first page); ``None``: no link."""
    kept = [(name, value) for name, value in args if value and name not in ("older", "newer")]

    def href(name: str, cursor: str | None) -> str | None:
        if cursor is None:
            return None
        given = kept + ([(name, cursor)] if cursor else [])
        return f"{path}?{urlencode(given)}" if given else path

    return {"newer": href("newer", page.newer), "older": href("older", page.older)}
