"""``cleanup_expired_exports`` (hourly): data exports past EXPORT_TTL_H, and what killed export runs
left behind, deleted from the export storage (:mod:`worker_app.exports`).

* ``expired`` — finished exports whose file (or S3 object) was written EXPORT_TTL_H hours ago or more
  (their links have expired with them);
* ``leftovers`` — temporary files (``.<name>.<random>.part``), empty job directories and incomplete
  S3 multipart uploads older than :func:`leftover_age_s`: no export still running can own them.

Only names an export has are ever touched: ``<job id>/<file name>`` under EXPORT_DIR or the S3 prefix.
"""

from __future__ import annotations

import time
from typing import Any

import dramatiq

from actors.cleanup import QUEUE
from actors.cleanup.metrics import deleted_total
from actors.cleanup.run import log_done
from worker_app.config import Settings
from worker_app.exports import Storage, storage_for
from worker_app.runtime import get_runtime

JOB = "cleanup_expired_exports"
#: Leftovers at least this old are a killed run's (however long exports may run: twice TIME_LIMIT_MS).
LEFTOVER_MIN_AGE_S = 3600


def leftover_age_s(settings: Settings) -> float:
    """How old a temporary file must be before it counts as a killed run's."""
    return max(LEFTOVER_MIN_AGE_S, 2 * settings.time_limit_ms / 1000)


def clean_exports(storage: Storage, settings: Settings, now: float) -> dict[str, Any]:
    """Delete the expired exports and the leftovers in ``storage`` at ``now``; the run's summary."""
    started = time.monotonic()
    swept = storage.sweep(now, settings.export_ttl_h * 3600, leftover_age_s(settings))
    return {"job": JOB, "storage": storage.kind, "counts": swept.counts(),
            "duration_s": round(time.monotonic() - started, 3)}  # fmt: skip


@dramatiq.actor(queue_name=QUEUE, store_results=True)
def cleanup_expired_exports() -> dict[str, Any]:
    """Delete exports older than EXPORT_TTL_H and the temporary files of killed export runs (hourly)."""
    settings = get_runtime().settings
    summary = clean_exports(storage_for(settings), settings, time.time())
    counts = summary["counts"]
    if sum(counts.values()):
        deleted_total().labels(JOB).inc(sum(counts.values()))
    log_done(JOB, counts, summary, stopped=None, what="file(s)", then="runs in an hour")
    return summary
