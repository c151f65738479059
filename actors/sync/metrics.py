"""What every sync job reports: the counter ``cybervpn_sync_total{job,outcome}`` and the run's one
``sync job done: <job> <counts>`` line (its ``extra`` is the summary the actor returns)."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from worker_app.lazy import created_once

log = logging.getLogger("actors.sync")


@created_once
def sync_total() -> Any:
    import prometheus_client as prom

    return prom.Counter(
        "cybervpn_sync", "Items handled by the sync jobs, by job and outcome (inserted, updated, unchanged, "
        "removed, unknown_country; written, failed; ...).",
        ("job", "outcome"), registry=None,
    )  # fmt: skip


def job_done(job: str, counts: Mapping[str, int], started: float, **extra: Any) -> dict[str, Any]:
    """Count ``counts`` under ``job``, log the run's line and return its summary (``started`` is a
    ``time.monotonic()`` reading taken when the run began)."""
    for outcome, n in counts.items():
        if n:
            sync_total().labels(job, outcome).inc(n)
    summary = {"job": job, "counts": dict(counts), **extra,
               "duration_s": round(time.monotonic() - started, 3)}  # fmt: skip
    log.info("sync job done: %s %s", job, dict(counts), extra=summary)
    return summary
