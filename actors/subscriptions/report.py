"""One run of a subscriptions job, counted: its JSON log line and its metrics.

Every run ends with one line — INFO ``subscriptions job done``, or WARNING ``subscriptions job
failed`` with an ``error`` field when it raised (it is then retried) — whose ``job``, ``counts`` and
``duration_s`` fields say what it did (``counts`` by detailed outcome, e.g. ``queued``,
``already_reminded``, ``no_telegram_id``), and adds those counts to
``cybervpn_subscription_users_total{job, outcome}`` where ``outcome`` is ``processed``, ``skipped`` or
``failed`` (:data:`KINDS` maps each detailed outcome to one of them).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from worker_app.lazy import created_once

log = logging.getLogger("actors.subscriptions")

KINDS = {
    "queued": "processed",
    "disabled": "processed",
    "reset": "processed",
    "invoiced": "processed",
    "completed_after_crash": "processed",
    "already_reminded": "skipped",
    "no_telegram_id": "skipped",
    "not_found": "skipped",
    "renewed_meanwhile": "skipped",
    "not_due": "skipped",
    "held_by_valve": "skipped",
    "already_handled": "skipped",
    "bad_telegram_id": "failed",
    "malformed": "failed",
    "failed": "failed",
}
"""Detailed outcome → the metric's ``outcome`` label; outcomes not listed (``scanned``, ``due``,
``expired``, ``bulk_calls``) are context in the log line, not counted in the metric."""


@dataclass
class RunReport:
    """What one run did; ``counts`` by detailed outcome."""

    job: str
    dry_run: bool = False
    counts: Counter[str] = field(default_factory=Counter)
    details: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)

    summary: dict[str, Any] = field(default_factory=dict)
    """What :meth:`finish` logged (set when the run ends)."""

    def add(self, outcome: str, amount: int = 1) -> None:
        """Count ``amount`` users (or calls) under ``outcome``."""
        if amount:
            self.counts[outcome] += amount

    @contextmanager
    def running(self) -> Iterator[RunReport]:
        """The run's body: its line is logged and its counts exported however it ends; a run that
        raises counts one ``failed`` and logs the error before the exception goes on (to be retried)."""
        try:
            yield self
        except Exception as e:
            self.add("failed")
            self.details["error"] = f"{type(e).__name__}: {e}"
            raise
        finally:
            self.finish()

    def finish(self) -> dict[str, Any]:
        """Log the run's line, add its counts to the metric (not for a dry run); return its summary."""
        summary = {
            "job": self.job,
            "dry_run": self.dry_run,
            "counts": dict(self.counts),
            "duration_s": round(time.monotonic() - self.started, 3),
            **self.details,
        }
        self.summary = summary
        failed = "error" in self.details
        log.log(logging.WARNING if failed else logging.INFO, "subscriptions job %s: %s %s",
                "failed" if failed else "done", self.job, dict(self.counts), extra=summary)  # fmt: skip
        if not self.dry_run:
            for outcome, amount in self.counts.items():
                kind = KINDS.get(outcome)
                if kind is not None:
                    _users_total().labels(self.job, kind).inc(amount)
        return summary


@created_once
def _users_total() -> Any:
    import prometheus_client as prom

    return prom.Counter(
        "cybervpn_subscription_users", "Users handled by the subscriptions jobs, by job and outcome.",
        ("job", "outcome"), registry=None,
    )  # fmt: skip
