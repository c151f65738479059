"""The bulk domain's metrics, created on first use: ``cybervpn_bulk_users_total{operation,result}``
(users a bulk operation applied, ``succeeded`` or ``failed``) and
``cybervpn_bulk_panel_calls_total{operation}`` (panel calls it made, narrowing and read-backs
included), ``cybervpn_bulk_broadcast_recipients_total{audience,outcome}`` (recipients of bulk
broadcasts), ``cybervpn_export_rows_total{export_type}`` (rows in finished exports) and
``cybervpn_exports_total{export_type,result}`` (export runs: ``succeeded``, ``failed``, ``cancelled``)."""

from __future__ import annotations

from typing import Any

from worker_app.lazy import created_once


@created_once
def users_total() -> Any:
    import prometheus_client as prom

    return prom.Counter("cybervpn_bulk_users", "Users bulk user operations processed, by result.",
                        ("operation", "result"), registry=None)  # fmt: skip


@created_once
def calls_total() -> Any:
    import prometheus_client as prom

    return prom.Counter("cybervpn_bulk_panel_calls", "Remnawave calls of bulk user operations.",
                        ("operation",), registry=None)  # fmt: skip


@created_once
def recipients_total() -> Any:
    """``cybervpn_bulk_broadcast_recipients_total{audience,outcome}``: recipients of bulk broadcasts
    (``audience`` all | list) by ``outcome``: queued, duplicate (removed), without_telegram_id."""
    import prometheus_client as prom

    return prom.Counter(
        "cybervpn_bulk_broadcast_recipients", "Recipients of bulk broadcasts by audience (all, list) and "
        "outcome (queued, duplicate, without_telegram_id).", ("audience", "outcome"), registry=None,
    )  # fmt: skip


@created_once
def rows_total() -> Any:
    import prometheus_client as prom

    return prom.Counter("cybervpn_export_rows", "Rows written by finished data exports.", ("export_type",),
                        registry=None)  # fmt: skip


@created_once
def exports_total() -> Any:
    import prometheus_client as prom

    return prom.Counter("cybervpn_exports", "Data export runs, by result (succeeded, failed, cancelled).",
                        ("export_type", "result"), registry=None)  # fmt: skip
