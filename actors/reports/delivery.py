"""A report to every admin, once: its parts queued in the durable outbox
(:mod:`actors.notifications.outbox`), sent by the ``notification_queue`` consumer with its rate
limits, retries and sent journal, with ``parse_mode`` HTML.

Each part is keyed ``report:<report>:<period>:<admin>:<part>``, so running the same report again —
a redelivered message, a manual re-run — queues nothing: an admin who already has the report's
first part is skipped whole (the parts of one admin are queued in one transaction, so the first
stands for all of them, even when a re-run would cut the report differently). Runs of one report
and period take a transaction-level advisory lock, so two at once queue it once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text

from actors.notifications.outbox import Outgoing, queue_notifications, row_id
from worker_app.db import Database
from worker_app.lazy import created_once

log = logging.getLogger("actors.reports")

_LOCK = text("SELECT pg_advisory_xact_lock(hashtext(:name))")
_QUEUED = text("SELECT id FROM notification_queue WHERE id = ANY(CAST(:ids AS uuid[]))")


@dataclass
class Report:
    """A rendered report: ``name`` (``daily``, ``weekly``), its ``period`` (``2026-12-06``,
    ``2026-W49``), its messages, and facts for the run's summary."""

    name: str
    period: str
    parts: list[str]
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Delivered:
    admins: int
    queued: int
    already_queued: int


def part_key(report: Report, admin: int, part: int) -> str:
    return f"report:{report.name}:{report.period}:{admin}:{part}"


def deliver(database: Database, report: Report, admin_ids: Sequence[int]) -> Delivered:
    """Queue every part of ``report`` for each admin that does not have it yet."""
    admins = list(dict.fromkeys(admin_ids))
    if not admins:
        return Delivered(0, 0, 0)
    with database.transaction() as s:
        s.execute(_LOCK, {"name": f"report:{report.name}:{report.period}"})
        first = {row_id(part_key(report, a, 1)): a for a in admins}
        done = {first[r.id] for r in s.execute(_QUEUED, {"ids": list(first)})}
        messages = [
            Outgoing(part_key(report, admin, n), admin, part, f"report_{report.name}", "HTML")
            for admin in admins if admin not in done
            for n, part in enumerate(report.parts, 1)
        ]  # fmt: skip
        inserted = queue_notifications(s, messages)
    return Delivered(len(admins), len(inserted), len(done))


def finish(job: str, report: Report, delivered: Delivered, *, started: float) -> dict[str, Any]:
    """Count the run in the metrics and log its ``reports job done`` line; its summary."""
    messages_total().labels(report.name, "queued").inc(delivered.queued)
    messages_total().labels(report.name, "already_queued").inc(delivered.already_queued * len(report.parts))
    _last_success().labels(report.name).set(time.time())
    summary = {
        "job": job, "report": report.name, "period": report.period, "parts": len(report.parts),
        "admins": delivered.admins, "queued": delivered.queued, "already_queued": delivered.already_queued,
        **report.details, "duration_s": round(time.monotonic() - started, 3),
    }  # fmt: skip
    if not delivered.admins:
        log.warning("report %s %s not sent: ADMIN_TELEGRAM_IDS is empty", report.name, report.period)
    log.info("reports job done: %s %s: %d message(s) queued for %d admin(s), %d already had it",
             job, report.period, delivered.queued, delivered.admins, delivered.already_queued,
             extra=summary)  # fmt: skip
    return summary


@created_once
def messages_total() -> Any:
    import prometheus_client as prom

    return prom.Counter(
        "cybervpn_report_messages", "Report messages to admins: queued (for the notification_queue "
        "consumer), already_queued (a re-run: nothing queued again).", ("report", "result"), registry=None,
    )  # fmt: skip


@created_once
def _last_success() -> Any:
    import prometheus_client as prom

    return prom.Gauge(
        "cybervpn_report_last_success_timestamp_seconds", "When each report was last built and queued.",
        ("report",), multiprocess_mode="max", registry=None,
    )  # fmt: skip
