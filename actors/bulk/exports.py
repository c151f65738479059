"""``generate_data_export(export_type, date_range, format)``: a data export as a file, and its link
to the admin who asked for it (docs/exports.md).

* ``export_type`` — ``users`` (the panel's), ``payments``, ``audit`` (the tables) or ``servers`` (the
  panel's nodes with their places); columns in :mod:`actors.bulk.export_sources`;
* ``date_range`` — ``{"from": "YYYY-MM-DD", "to": "YYYY-MM-DD"}``, inclusive UTC days of the records'
  creation, or ``None`` for all;
* ``format`` — ``csv``, ``jsonl`` (JSON Lines) or ``json`` (one JSON array):
  :mod:`actors.bulk.export_formats`.

Arguments are checked before the actor runs (by the worker, and by ``POST /api/v1/jobs`` and
``/api/v1/exports``): a bad one is refused with a line naming it, never retried. The rows are
streamed, ``EXPORT_BATCH_ROWS`` at a time, into a temporary file that becomes the export only when
complete (:mod:`worker_app.exports`), kept ``EXPORT_TTL_H`` hours. Progress is the job's (rows, or
panel users read); the result is ``{export_type, format, date_range, rows, bytes, url, expires_at,
storage, file_name}``; the link goes to the admin who started the job (else every
ADMIN_TELEGRAM_IDS) once, through the outbox. Each run logs one line (logger ``actors.bulk``) and
counts ``cybervpn_exports_total`` and ``cybervpn_export_rows_total``.
"""

from __future__ import annotations

import contextlib
import html
import logging
import re
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, BinaryIO, Literal

import dramatiq
from pydantic import ConfigDict
from typing_extensions import TypedDict

from actors.bulk import QUEUE
from actors.bulk.admins import notify, recipients
from actors.bulk.export_formats import WRITERS
from actors.bulk.export_sources import COLUMNS, Batches, Span, server_batches, table_batches, user_batches
from actors.bulk.metrics import exports_total, rows_total
from worker_app.arguments import checked_by
from worker_app.clients.remnawave import RemnawaveClient
from worker_app.config import Settings
from worker_app.context import current_message_id
from worker_app.days import DayArgument, midnight
from worker_app.db import Database
from worker_app.errors import BadMessage, JobCancelled
from worker_app.exports import Storage, storage_for
from worker_app.jobs import get_job, report_progress
from worker_app.runtime import Runtime, get_runtime

EXPORT_TYPES = ("users", "payments", "servers", "audit")
FORMATS = {"csv": "CSV", "jsonl": "JSON Lines", "json": "JSON array"}
ExportType = Literal["users", "payments", "servers", "audit"]
ExportFormat = Literal["csv", "jsonl", "json"]
DateRange = TypedDict("DateRange", {"from": DayArgument, "to": DayArgument})
DateRange.__pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[attr-defined]
Progress = Callable[[int, int], None]
log = logging.getLogger("actors.bulk")
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True)
class ExportRequest:
    """What to export: a type, a format and (``first_day``..``last_day``, inclusive) a date range."""

    export_type: str
    fmt: str
    first_day: date | None = None
    last_day: date | None = None

    @classmethod
    def of(cls, export_type: Any, date_range: Any, fmt: Any) -> ExportRequest:
        """The actor's arguments checked; :class:`BadMessage` naming the argument otherwise."""
        if export_type not in EXPORT_TYPES:
            raise BadMessage(f"export_type: {export_type!r} is not one of {', '.join(EXPORT_TYPES)}")
        if fmt not in FORMATS:
            choices = ", ".join(f"{k} ({v})" for k, v in FORMATS.items())
            raise BadMessage(f"format: {fmt!r} is not one of {choices}")
        if date_range is None:
            return cls(export_type, fmt)
        if not isinstance(date_range, dict) or set(date_range) != {"from", "to"}:
            raise BadMessage(f'date_range: expected {{"from": "YYYY-MM-DD", "to": "YYYY-MM-DD"}} (inclusive '
                             f"UTC days) or null, got {date_range!r}")  # fmt: skip
        first, last = _day(date_range["from"], "from"), _day(date_range["to"], "to")
        if first > last:
            raise BadMessage(f"date_range: from {first} is after to {last}")
        return cls(export_type, fmt, first, last)

    @property
    def span(self) -> Span:
        """The UTC interval ``[from 00:00, the day after to 00:00)``; ``None`` without a range."""
        if self.first_day is None or self.last_day is None:
            return None
        return midnight(self.first_day), midnight(self.last_day + timedelta(days=1))

    def file_name(self, today: date) -> str:
        """``payments-2026-12-01_2026-12-07.csv``; without a range ``users-all-<today>.jsonl``."""
        days = f"{self.first_day}_{self.last_day}" if self.first_day else f"all-{today}"
        return f"{self.export_type}-{days}.{self.fmt}"

    def date_range(self) -> dict[str, str] | None:
        return {"from": str(self.first_day), "to": str(self.last_day)} if self.first_day else None

    def describe(self) -> str:
        """``payments 2026-12-01 – 2026-12-07, CSV``."""
        days = f"{self.first_day} – {self.last_day}" if self.first_day else "all"
        return f"{self.export_type} {days}, {FORMATS[self.fmt]}"


def _day(value: Any, name: str) -> date:
    day = None
    if isinstance(value, str) and _DAY.fullmatch(value):
        with contextlib.suppress(ValueError):  # 2026-02-30: not a date
            day = date.fromisoformat(value)
    if day is None or day == date.max:  # the day after it must exist too
        raise BadMessage(f"date_range.{name}: {value!r} is not a date (YYYY-MM-DD)")
    return day


def _checked(arguments: dict[str, Any]) -> None:
    ExportRequest.of(arguments["export_type"], arguments["date_range"], arguments["format"])


@dataclass(frozen=True)
class Sources:
    """Where the rows come from."""

    database: Database
    panel: RemnawaveClient
    batch_rows: int

    def batches(self, request: ExportRequest) -> Batches:
        kind, span = request.export_type, request.span
        if kind == "users":
            return user_batches(self.panel, span, min(self.batch_rows, 1000))
        if kind == "servers":
            return server_batches(self.panel, self.database, span, self.batch_rows)
        return table_batches(self.database, kind, span, self.batch_rows)


def _no_progress(processed: int, total: int) -> None:
    """Progress goes nowhere (a run outside a tracked job: the CLI, a test, the bench)."""


def export_data(
    request: ExportRequest,
    job_id: str,
    *,
    sources: Sources,
    storage: Storage,
    settings: Settings,
    now: datetime,
    progress: Progress = _no_progress,
) -> dict[str, Any]:
    """Write the export of ``request`` as job ``job_id``'s file in ``storage``; its result (see the
    module docstring). Nothing is kept when this raises."""

    def write(file: BinaryIO) -> int:
        writer = WRITERS[request.fmt](file, COLUMNS[request.export_type])
        rows = read = 0
        writer.begin()
        with closing(sources.batches(request)) as batches:
            for batch in batches:
                writer.rows(batch.rows)
                rows, read = rows + len(batch.rows), read + batch.read
                progress(read, max(batch.total, read))
        writer.end()
        progress(read, read)
        return rows

    rows, stored = storage.save(job_id, request.file_name(now.date()), write)
    expires = int(stored.finished_at + settings.export_ttl_h * 3600)
    return {
        "export_type": request.export_type, "format": request.fmt, "date_range": request.date_range(),
        "rows": rows, "bytes": stored.size, "url": storage.link(settings, stored, expires, time.time()),
        "expires_at": datetime.fromtimestamp(expires, UTC).isoformat().replace("+00:00", "Z"),
        "storage": stored.storage, "file_name": stored.file_name,
    }  # fmt: skip


def ready_text(result: dict[str, Any], request: ExportRequest) -> str:
    """The admin's notice (HTML): what, how big, the link and until when it works."""
    until = result["expires_at"].replace("T", " ")[:16]
    size = (
        f"{result['bytes'] / 1024:,.1f} KiB"
        if result["bytes"] < 1024**2
        else f"{result['bytes'] / 1024**2:,.1f} MiB"
    )
    return (
        f"📦 <b>Export ready</b>: {html.escape(request.describe())}\n"
        f"{result['rows']:,} rows, {size}\n"
        f'<a href="{html.escape(result["url"], quote=True)}">Download {html.escape(result["file_name"])}</a> '
        f"(the link works until {until} UTC)"
    )


def run_export(runtime: Runtime, request: ExportRequest, job_id: str) -> dict[str, Any]:
    """The actor's work: the export, its metrics and log line, and the admin's notice."""
    settings = runtime.settings
    sources = Sources(runtime.database, runtime.remnawave, settings.export_batch_rows)
    started = time.monotonic()
    summary: dict[str, Any] = {"job_id": job_id, "export_type": request.export_type, "format": request.fmt,
                               "date_range": request.date_range()}  # fmt: skip
    try:
        result = export_data(request, job_id, sources=sources, storage=storage_for(settings),
                             settings=settings, now=datetime.now(UTC), progress=report_progress)  # fmt: skip
    except BaseException as e:
        outcome = "cancelled" if isinstance(e, JobCancelled) else "failed"
        exports_total().labels(request.export_type, outcome).inc()
        summary.update(result=outcome, error=f"{type(e).__name__}: {e}", duration_s=_since(started))
        log.warning(
            "export %s: %s (%s): %s", outcome, job_id, request.describe(), summary["error"], extra=summary
        )
        raise
    duration = _since(started)
    summary.update({k: result[k] for k in ("rows", "bytes", "storage", "file_name", "expires_at")})
    summary.update(
        result="succeeded", duration_s=duration, rows_per_s=round(result["rows"] / max(duration, 1e-3))
    )
    exports_total().labels(request.export_type, "succeeded").inc()
    rows_total().labels(request.export_type).inc(result["rows"])
    log.info("export done: %s (%s) %d rows, %d bytes", job_id, request.describe(), result["rows"],
             result["bytes"], extra=summary)  # fmt: skip
    job = get_job(runtime.database, job_id)
    chats = recipients(settings, job.initiated_by if job is not None else None)
    notify(
        runtime.database,
        f"export:{job_id}",
        ready_text(result, request),
        chats,
        notification_type="bulk_export",
    )
    return result


def _since(started: float) -> float:
    return round(time.monotonic() - started, 3)


@dramatiq.actor(queue_name=QUEUE, store_results=True)
@checked_by(_checked)
def generate_data_export(
    export_type: ExportType, date_range: DateRange | None = None, format: ExportFormat = "csv"
) -> dict[str, Any]:
    """Export users, payments, servers or audit logs (``date_range``: inclusive UTC days of creation)
    as CSV, JSON Lines or a JSON array; the file is kept EXPORT_TTL_H hours and its link sent to
    the admin who asked. Never retried (the bulk policy): a failed export is reported to them."""
    request = ExportRequest.of(export_type, date_range, format)
    return run_export(get_runtime(), request, current_message_id())
