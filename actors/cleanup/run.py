"""One cleanup run as every PostgreSQL job does it: :func:`run_job` deletes its targets in batches
(:func:`actors.cleanup.batches.delete_in_batches`), adds each committed batch to
``cybervpn_cleanup_deleted_total{job}``, sets ``cybervpn_cleanup_longest_batch_seconds{job}`` to the
run's longest batch transaction, and logs the run's one line ``cleanup job done: <job> <counts>`` (logger
``actors.cleanup``, ``extra`` = the summary it returns) — preceded by a WARNING when it stopped early.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from actors.cleanup.archive import JsonlArchive
from actors.cleanup.batches import Deleted, Limits, Target, delete_in_batches
from actors.cleanup.metrics import deleted_total, longest_batch_seconds
from worker_app.runtime import Runtime
from worker_app.timefmt import utc_stamp

log = logging.getLogger("actors.cleanup")


def run_job(runtime: Runtime, job: str, targets: Sequence[Target], *,
            archive: JsonlArchive | None = None) -> dict[str, Any]:  # fmt: skip
    """Run ``job`` over ``targets`` now with the CLEANUP_* limits; its summary."""
    started = time.monotonic()
    counter = deleted_total().labels(job)
    limits = Limits.of(runtime.settings, job)
    deleted = delete_in_batches(
        runtime.database, job, targets, limits, archive=archive,
        stop=runtime.stopping, progress=lambda _name, rows: counter.inc(rows),
    )  # fmt: skip
    longest_batch_seconds().labels(job).set(deleted.longest_batch_s)
    summary = summarise(job, targets, deleted, started)
    if limits.max_rows is not None:
        summary["batch_limit"] = limits.max_rows
    if archive is not None:
        summary["archived"] = archive.rows
    log_done(job, deleted.counts, summary, stopped=deleted.stopped, what="row(s)", then="continues")
    return summary


def log_done(job: str, counts: Mapping[str, int], summary: dict[str, Any], *, stopped: str | None, what: str,
             then: str) -> None:  # fmt: skip
    """Every cleanup job's end: a WARNING when it stopped early (``after <n> <what>; the next run
    <then>``), then the one line ``cleanup job done: <job> <counts>`` with the summary."""
    if stopped:
        log.warning("cleanup job stopped: %s (%s) after %d %s; the next run %s",
                    job, stopped, sum(counts.values()), what, then)  # fmt: skip
    log.info("cleanup job done: %s %s", job, dict(counts), extra=summary)


def summarise(job: str, targets: Sequence[Target], deleted: Deleted, started: float) -> dict[str, Any]:
    """The run's summary: ``job``, ``counts`` (rows deleted per target), ``batches``,
    ``longest_batch_s``, ``stopped`` (``None``, ``time budget``, ``batch limit``, ``shutdown``,
    ``timeout``, ``another run in progress``), ``due_before`` (each target's bound, UTC) and
    ``duration_s``."""
    return {
        "job": job, "counts": dict(deleted.counts), "batches": deleted.batches,
        "longest_batch_s": round(deleted.longest_batch_s, 4), "stopped": deleted.stopped,
        "due_before": {t.name: utc_stamp(t.before) if t.before else None for t in targets},
        "duration_s": round(time.monotonic() - started, 3),
    }  # fmt: skip
