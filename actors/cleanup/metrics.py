"""The cleanup domain's metrics, created on first use: ``cybervpn_cleanup_deleted_total{job}`` (rows
or keys every cleanup job deleted) and ``cybervpn_cleanup_longest_batch_seconds{job}`` (the longest
batch transaction of each PostgreSQL job's last run)."""

from __future__ import annotations

from typing import Any

from worker_app.lazy import created_once


@created_once
def deleted_total() -> Any:
    import prometheus_client as prom

    return prom.Counter("cybervpn_cleanup_deleted", "Rows (or Redis keys) deleted by each cleanup job.",
                        ("job",), registry=None)  # fmt: skip


@created_once
def longest_batch_seconds() -> Any:
    import prometheus_client as prom

    return prom.Gauge(
        "cybervpn_cleanup_longest_batch_seconds", "The longest batch transaction (BEGIN to COMMIT) of each "
        "PostgreSQL cleanup job's last run.", ("job",), multiprocess_mode="mostrecent", registry=None,
    )  # fmt: skip
