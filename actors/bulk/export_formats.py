"""An export's file formats, each written as a stream, batch by batch (constant memory):

* ``csv`` — RFC 4180 through the stdlib ``csv`` writer (a header row, ``\\r\\n`` line ends, fields
  quoted when they must be), UTF-8 without BOM; NULL is an empty field, booleans ``true``/``false``,
  JSON values (an audit log's ``details``) as their compact JSON text;
* ``jsonl`` — JSON Lines: one object per line;
* ``json`` — one JSON array of the same objects, one per line.

Values arrive already as they are written (:mod:`actors.bulk.export_sources`): times as ISO-8601 UTC
text, decimals as text; a column's :data:`Kind` says how JSON writes it.
"""

from __future__ import annotations

import csv
import io
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO, Literal

#: How a column is written in JSON: a string, a number, ``true``/``false``, or embedded JSON text.
Kind = Literal["text", "number", "bool", "json"]
Row = Sequence[Any]


@dataclass(frozen=True)
class Column:
    """One column of an export: its name (CSV header, JSON key) and kind."""

    name: str
    kind: Kind = "text"


class Writer(ABC):
    """Writes an export's rows to a binary file: :meth:`begin`, :meth:`rows` per batch, :meth:`end`.
    A format with nothing to write before the first row or after the last keeps those two as they are."""

    def begin(self) -> None:  # noqa: B027 -- a hook, empty on purpose
        """What comes before the first row (a header, an opening bracket): nothing here."""

    @abstractmethod
    def rows(self, rows: Sequence[Row]) -> None:
        """Write one batch of rows (each format says how)."""

    def end(self) -> None:  # noqa: B027 -- a hook, empty on purpose
        """What comes after the last row (a closing bracket): nothing here."""


class CsvWriter(Writer):
    """RFC 4180 CSV; each batch is formatted in memory, then written to the file in one call."""

    def __init__(self, out: BinaryIO, columns: Sequence[Column]) -> None:
        self.out = out
        self.header = [c.name for c in columns]
        self.bools = [i for i, c in enumerate(columns) if c.kind == "bool"]
        self.buffer = io.StringIO()
        self.csv = csv.writer(self.buffer)

    def begin(self) -> None:
        self.csv.writerow(self.header)
        self._flush()

    def rows(self, rows: Sequence[Row]) -> None:
        if self.bools:
            rows = [_csv_bools(row, self.bools) for row in rows]
        self.csv.writerows(rows)
        self._flush()

    def _flush(self) -> None:
        self.out.write(self.buffer.getvalue().encode("utf-8", "replace"))
        self.buffer.seek(0)
        self.buffer.truncate()


def _csv_bools(row: Row, positions: list[int]) -> list[Any]:
    values = list(row)
    for i in positions:
        if isinstance(values[i], bool):
            values[i] = "true" if values[i] else "false"
    return values


def _text(value: Any) -> str:
    return json.dumps(value if isinstance(value, str) else str(value), ensure_ascii=False)


def _number(value: Any) -> str:
    return str(value) if type(value) is int else json.dumps(float(value))


def _bool(value: Any) -> str:
    return "true" if value else "false"


def _json(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


_ENCODERS: dict[Kind, Callable[[Any], str]] = {"text": _text, "number": _number, "bool": _bool, "json": _json}


class _Objects:
    """Rows as JSON objects (keys in column order), one per line."""

    def __init__(self, columns: Sequence[Column]) -> None:
        self.fields = [(json.dumps(c.name) + ":", _ENCODERS[c.kind]) for c in columns]

    def line(self, row: Row) -> str:
        pairs = (
            key + ("null" if v is None else encode(v))
            for (key, encode), v in zip(self.fields, row, strict=True)
        )
        return "{" + ",".join(pairs) + "}"


class JsonLinesWriter(Writer):
    """JSON Lines: one object per line."""

    def __init__(self, out: BinaryIO, columns: Sequence[Column]) -> None:
        self.out = out
        self.objects = _Objects(columns)

    def rows(self, rows: Sequence[Row]) -> None:
        text = "".join(self.objects.line(row) + "\n" for row in rows)
        self.out.write(text.encode("utf-8", "replace"))


class JsonArrayWriter(Writer):
    """One JSON array, streamed: ``[``, the objects one per line separated by commas, ``]``."""

    def __init__(self, out: BinaryIO, columns: Sequence[Column]) -> None:
        self.out = out
        self.objects = _Objects(columns)
        self.first = True

    def begin(self) -> None:
        self.out.write(b"[")

    def rows(self, rows: Sequence[Row]) -> None:
        if not rows:
            return
        lead = "\n" if self.first else ",\n"
        self.first = False
        text = lead + ",\n".join(self.objects.line(row) for row in rows)
        self.out.write(text.encode("utf-8", "replace"))

    def end(self) -> None:
        self.out.write(b"]\n" if self.first else b"\n]\n")


WRITERS: dict[str, Callable[[BinaryIO, Sequence[Column]], Writer]] = {
    "csv": CsvWriter, "jsonl": JsonLinesWriter, "json": JsonArrayWriter,
}  # fmt: skip
