"""Where each export's rows come from, batch by batch, in the form the writers take them
(:mod:`actors.bulk.export_formats`): times ISO-8601 UTC text (``2026-12-01T08:30:00.000000Z``),
decimals as text, NULL as ``None``.

* ``payments``, ``audit`` — the PostgreSQL tables, ordered by ``created_at, id``, through one
  server-side cursor (``EXPORT_BATCH_ROWS`` rows a fetch) in a ``REPEATABLE READ READ ONLY``
  transaction: one consistent snapshot, never the whole table in memory. PostgreSQL formats the
  values, so Python only passes text through.
* ``users`` — the panel's ``/api/users/stream``, a page at a time (subscription secrets — short
  uuid, subscription URL, passwords — are never exported).
* ``servers`` — the panel's nodes joined with ``server_geolocations`` by node uuid (a node without
  a row there has empty place columns; rows of nodes gone from the panel are not exported).

A date range keeps the records created in it (``created_at``; the panel's ``createdAt``).
"""

from __future__ import annotations

import uuid
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text

from actors.bulk.export_formats import Column, Row
from actors.monitoring.node_state import status_of
from worker_app.clients.remnawave import Node, RemnawaveClient, User
from worker_app.db import Database

#: The half-open UTC interval ``[start, end)`` of a date range; ``None``: everything.
Span = tuple[datetime, datetime] | None
Batches = Generator["Batch", None, None]
_ISO = """'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'"""


def iso(moment: datetime | None) -> str | None:
    """A time as every export writes it (what :data:`_ISO` gives in PostgreSQL)."""
    return None if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _at(column: str) -> str:
    return f"to_char({column} AT TIME ZONE 'UTC', {_ISO})"


@dataclass(frozen=True)
class Batch:
    """Rows to write, the source records read for them (users outside the range are read and not
    written), and the records the source holds in all, as known now."""

    rows: Sequence[Row]
    read: int
    total: int


PAYMENT_COLUMNS = (
    Column("id"), Column("user_id", "number"), Column("telegram_id", "number"), Column("plan_id"),
    Column("provider"), Column("external_id"), Column("amount"), Column("currency"), Column("status"),
    Column("subscription_days", "number"), Column("paid_at"), Column("created_at"), Column("updated_at"),
    Column("error_message"),
)  # fmt: skip
PAYMENT_SELECT = f"""
    SELECT id::text, user_id, telegram_id, plan_id::text, provider, external_id, amount::text, currency,
           status, subscription_days, {_at("paid_at")}, {_at("created_at")}, {_at("updated_at")},
           error_message
    FROM payments"""
AUDIT_COLUMNS = (
    Column("id", "number"), Column("created_at"), Column("actor"), Column("action"), Column("entity_type"),
    Column("entity_id"), Column("details", "json"), Column("ip_address"),
)  # fmt: skip
AUDIT_SELECT = f"""
    SELECT id, {_at("created_at")}, actor, action, entity_type, entity_id, details::text, ip_address
    FROM audit_logs"""
USER_COLUMNS = (
    Column("id", "number"), Column("username"), Column("status"), Column("telegram_id", "number"),
    Column("email"), Column("tag"), Column("description"), Column("expire_at"), Column("created_at"),
    Column("traffic_limit_bytes", "number"), Column("traffic_limit_strategy"),
    Column("used_traffic_bytes", "number"), Column("lifetime_used_traffic_bytes", "number"),
    Column("last_traffic_reset_at"), Column("online_at"),
)  # fmt: skip
SERVER_COLUMNS = (
    Column("uuid"), Column("name"), Column("address"), Column("port", "number"), Column("country_code"),
    Column("status"), Column("is_connected", "bool"), Column("is_disabled", "bool"),
    Column("users_online", "number"), Column("traffic_used_bytes", "number"),
    Column("traffic_limit_bytes", "number"), Column("created_at"), Column("country"), Column("city"),
    Column("region"), Column("latitude", "number"), Column("longitude", "number"),
)  # fmt: skip
COLUMNS = {
    "users": USER_COLUMNS,
    "payments": PAYMENT_COLUMNS,
    "servers": SERVER_COLUMNS,
    "audit": AUDIT_COLUMNS,
}


def table_batches(database: Database, export_type: str, span: Span, batch_rows: int) -> Batches:
    """``payments`` or ``audit_logs`` rows created within ``span``, oldest first."""
    payments = export_type == "payments"
    select, table = (PAYMENT_SELECT, "payments") if payments else (AUDIT_SELECT, "audit_logs")
    where, params = "", {}
    if span is not None:
        where, params = (
            " WHERE created_at >= %(start)s AND created_at < %(end)s",
            {"start": span[0], "end": span[1]},
        )
    with database.engine.connect() as conn:
        raw: Any = conn.connection.driver_connection  # psycopg's own: a server-side (named) cursor
        raw.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        total = int(raw.execute(f"SELECT count(*) FROM {table}{where}", params).fetchone()[0])
        with raw.cursor(name=f"export_{uuid.uuid4().hex}", binary=True) as cursor:
            cursor.execute(f"{select}{where} ORDER BY created_at, id", params)
            while rows := cursor.fetchmany(batch_rows):
                yield Batch(rows, len(rows), total)


def user_batches(panel: RemnawaveClient, span: Span, page_size: int) -> Batches:
    """The panel's users (created within ``span``), a stream page at a time, in id order."""
    total = _users_total(panel)
    read = 0
    for page in panel.user_pages(page_size=page_size):
        read += len(page)
        rows = [_user_row(u) for u in page if _within(_when(u.raw.get("createdAt")), span)]
        yield Batch(rows, len(page), max(total, read))


def _users_total(panel: RemnawaveClient) -> int:
    """The panel's user count, for progress (0 when its stats do not say)."""
    try:
        return int(panel.system_stats()["users"]["totalUsers"])
    except (KeyError, TypeError, ValueError):
        return 0


def _user_row(u: User) -> Row:
    raw, traffic = u.raw, u.raw.get("userTraffic") or {}
    return (
        u.id, u.username, u.status, u.telegram_id, _str(raw.get("email")), _str(raw.get("tag")),
        _str(raw.get("description")), iso(u.expire_at), iso(_when(raw.get("createdAt"))),
        _int(raw.get("trafficLimitBytes")), u.traffic_limit_strategy, u.used_traffic_bytes,
        _int(traffic.get("lifetimeUsedTrafficBytes")), iso(u.last_traffic_reset_at),
        iso(_when(traffic.get("onlineAt"))),
    )  # fmt: skip


_PLACES = text(
    "SELECT node_uuid, country, city, region, latitude, longitude FROM server_geolocations "
    "WHERE node_uuid = ANY(CAST(:uuids AS text[]))"
)


def server_batches(panel: RemnawaveClient, database: Database, span: Span, batch_rows: int) -> Batches:
    """The panel's nodes (created within ``span``) with their places, in the panel's order."""
    nodes = [n for n in panel.nodes() if _within(_when(n.raw.get("createdAt")), span)]
    with database.transaction() as s:
        places = {r[0]: tuple(r[1:]) for r in s.execute(_PLACES, {"uuids": [n.uuid for n in nodes]})}
    for start in range(0, len(nodes), batch_rows):
        chunk = nodes[start : start + batch_rows]
        yield Batch([_server_row(n, places.get(n.uuid)) for n in chunk], len(chunk), len(nodes))


def _server_row(n: Node, place: tuple[Any, ...] | None) -> Row:
    raw = n.raw
    return (
        n.uuid, n.name, _str(raw.get("address")), _int(raw.get("port")), n.country_code or None,
        status_of(n), n.is_connected, n.is_disabled, n.users_online, n.traffic_used_bytes,
        _int(raw.get("trafficLimitBytes")), iso(_when(raw.get("createdAt"))), *(place or (None,) * 5),
    )  # fmt: skip


def _within(moment: datetime | None, span: Span) -> bool:
    return span is None or (moment is not None and span[0] <= moment < span[1])


def _when(value: Any) -> datetime | None:
    """A panel time (``2025-01-17T15:38:45.065Z``) as an aware datetime; ``None`` if absent or not one."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
