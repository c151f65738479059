"""How a batch finds its rows (the two walks) and the statements that take them.

* :class:`KeyRanges` — an integer primary key (``audit_logs.id``): ranges ``[lo, lo + batch_size)``
  from the smallest to the largest due key, found once per run; each batch an index range scan on the
  primary key, never a sort. A range with nothing left to take jumps to the next due key.
* :class:`Cursor` — any key (the UUID tables): ``(column, key)`` order on the column's index, each
  batch the next ``batch_size`` due rows after the last batch's last row, so no batch scans what the
  batches before it deleted.

A cursor batch locks its rows ``FOR UPDATE SKIP LOCKED`` (a row the backend holds is left for the
next run, never waited for) and deletes them by ``ctid`` in the same statement. A key range is first
deleted by one plain ``DELETE`` (half the write-ahead log: no row lock before the delete); only if a
row in it is held past ``lock_timeout`` is the range taken again the ``SKIP LOCKED`` way. Each
statement returns just the count and the last row — or, with an archive, the deleted rows whole,
archived before the batch commits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import Connection, Row, text

if TYPE_CHECKING:
    from collections.abc import Sequence

    from actors.cleanup.batches import Archive, Target

#: The last row a batch deleted, ``(column, key)``.
Last = tuple[Any, Any]


class Walk(Protocol):
    """Where the next batch's rows are."""

    done: bool
    plain: bool
    """Whether a batch may first be one plain ``DELETE`` of its window (waiting on held rows)."""
    n: int
    """The most rows the next batch deletes (a run near its batch limit lowers it)."""

    def window(self) -> tuple[str, dict[str, Any]]:
        """SQL that follows the due condition (``AND ...``, ordering, limit) and its values."""
        ...

    def advance(self, conn: Connection, deleted: int, last: Last | None) -> None:
        """After a batch that deleted ``deleted`` rows, the last being ``last``."""


@dataclass
class Cursor:
    """The next ``n`` due rows in ``(column, key)`` order after the previous batch's last."""

    target: Target
    n: int
    after: Last | None = None
    done: bool = False
    plain: bool = False

    def window(self) -> tuple[str, dict[str, Any]]:
        t = self.target
        order = f"ORDER BY {t.column}, {t.key} LIMIT :n"
        if self.after is None:
            return order, {"n": self.n}
        cursor = f"AND ({t.column}, {t.key}) > (:after_at, CAST(:after_key AS {t.key_type})) "
        return cursor + order, {"n": self.n, "after_at": self.after[0], "after_key": self.after[1]}

    def advance(self, conn: Connection, deleted: int, last: Last | None) -> None:
        self.after = last
        self.done = deleted < self.n


@dataclass
class KeyRanges:
    """Integer key ranges ``[lo, lo + n)`` up to the largest due key (both found by :meth:`start`)."""

    target: Target
    n: int
    lo: int | None = None
    last_key: int | None = None
    done: bool = False
    plain: bool = True

    def start(self, conn: Connection) -> KeyRanges:
        t = self.target
        query = f"SELECT min({t.key}), max({t.key}) FROM {t.table} AS t WHERE {t.due()}"
        with conn.begin():
            self.lo, self.last_key = conn.execute(text(query), t.bind()).one()
        self.done = self.lo is None
        return self

    def window(self) -> tuple[str, dict[str, Any]]:
        assert self.lo is not None
        key = self.target.key
        return f"AND {key} >= :lo AND {key} < :hi", {"lo": self.lo, "hi": self.lo + self.n}

    def advance(self, conn: Connection, deleted: int, last: Last | None) -> None:
        assert self.lo is not None and self.last_key is not None
        self.lo += self.n
        if deleted == 0 and self.lo <= self.last_key:  # a gap in the keys: on to the next due one
            t = self.target
            query = f"SELECT min({t.key}) FROM {t.table} AS t WHERE {t.key} >= :lo AND {t.due()}"
            with conn.begin():
                self.lo = conn.execute(text(query), {**t.bind(), "lo": self.lo}).scalar_one()
        self.done = self.lo is None or self.lo > self.last_key


def walk_of(conn: Connection, target: Target, n: int) -> Walk:
    """The walk ``target`` asks for."""
    return KeyRanges(target, n).start(conn) if target.key_ranges else Cursor(target, n)


def delete_batch(conn: Connection, target: Target, window: tuple[str, dict[str, Any]], *, plain: bool,
                 archive: Archive | None = None) -> tuple[int, Last | None]:  # fmt: skip
    """Delete the window's due rows in one statement; how many, and the last in walk order. ``plain``:
    a plain ``DELETE`` (a held row is waited for, up to ``lock_timeout``; no row lock taken before the
    delete: a key range's first try); otherwise the rows are locked first, held ones skipped. With an
    ``archive`` the statement returns the rows whole and they are archived (fsynced) before the
    caller commits."""
    sql, params = window
    where = f"{target.due()} {sql}" if plain else f"ctid = ANY(ARRAY({_claimed(target, sql)}))"
    params = {**target.bind(), **params}
    if archive is None:
        return _delete(conn, target, where, params)
    rows = _delete_returning(conn, target, where, params)
    if not rows:
        return 0, None
    archive.write(rows)
    return len(rows), max((r.at, r.key) for r in rows)


def _claimed(target: Target, window: str) -> str:
    return f"SELECT ctid FROM {target.table} AS t WHERE {target.due()} {window} FOR UPDATE SKIP LOCKED"


def _delete(conn: Connection, target: Target, where: str, params: dict[str, Any]) -> tuple[int, Last | None]:
    """Delete ``where`` (and run the target's ``then``); how many, and the last in walk order (a key
    range walk needs no last row: the plain count)."""
    if target.key_ranges and not target.then:
        deleted = conn.execute(text(f"DELETE FROM {target.table} AS t WHERE {where}"), params).rowcount
        return deleted, None
    sql = (
        f"{_gone(target, where)} "
        "SELECT (SELECT count(*) FROM gone) AS n, at, key FROM gone ORDER BY at DESC, key DESC LIMIT 1"
    )
    row = conn.execute(text(sql), params).first()
    return (0, None) if row is None else (row.n, (row.at, row.key))


def _delete_returning(
    conn: Connection, target: Target, where: str, params: dict[str, Any]
) -> Sequence[Row[Any]]:
    """Delete ``where`` (and run the target's ``then``); the deleted rows, each whole as JSON."""
    sql = f"{_gone(target, where, ', row_to_json(t)::text AS doc')} SELECT key, at, doc FROM gone"
    return conn.execute(text(sql), params).all()


def _gone(target: Target, where: str, more: str = "") -> str:
    also = f", also AS ({target.then})" if target.then else ""
    return (f"WITH gone AS (DELETE FROM {target.table} AS t WHERE {where} "
            f"RETURNING {target.key} AS key, {target.column} AS at{more}){also}")  # fmt: skip
