"""``sync_server_geolocations`` (every 6 h): the panel's nodes → ``server_geolocations``, for the
admin SPA's map.

One row per panel node, keyed on ``node_uuid``: ``name`` and ``address`` from the panel,
``country_code`` and ``country`` (the English short name) from the node's ``countryCode`` through the
static table of :mod:`actors.sync.countries` — no geo API. Coordinates are the country's point,
written when the row is new, when the node's country changed, or when the row has none; coordinates
already there for the same country are kept (the backend or an admin may have placed the node in its
city). ``city`` and ``region`` are never written, only cleared when the country changes (they named
a place in the old one).

* A node whose country code is empty or unknown (the panel's own "none" is ``XX``) is logged in one
  warning per run and counted ``unknown_country``; its row is still upserted, with NULL country
  code, country and coordinates — never a guess. Once the node has a known code it is placed.
* Nothing changed → nothing written: the upsert's ``WHERE ... IS DISTINCT FROM`` leaves the row
  alone, ``updated_at`` included, and the run counts it ``unchanged``.
* A row whose node the panel no longer lists is deleted (``removed``) — the map shows the servers
  that exist. Except when the panel lists no node at all: that is far likelier a wrong
  REMNAWAVE_URL than the end of every server, so nothing is deleted and a warning says why.

Counts: ``inserted``, ``updated``, ``unchanged`` (together: every node), ``removed``,
``unknown_country`` (among the former). The whole run is one transaction.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from typing import Any

import dramatiq
from sqlalchemy import and_, case, delete, func, or_, select, tuple_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import ReturningInsert

from actors.sync import QUEUE
from actors.sync.countries import lookup
from actors.sync.metrics import job_done
from models import ServerGeolocation
from worker_app.clients.remnawave import Node
from worker_app.db import Database
from worker_app.runtime import get_runtime

JOB = "sync_server_geolocations"
ROWS_PER_STATEMENT = 500
log = logging.getLogger(__name__)
_TABLE = ServerGeolocation.__table__
_NAME_MAX, _ADDRESS_MAX = 128, 255


def row_of(node: Node) -> dict[str, Any]:
    """The ``server_geolocations`` values for ``node`` (country fields NULL for an unknown code)."""
    country = lookup(node.country_code)
    address = node.raw.get("address")
    return {
        "node_uuid": node.uuid,
        "name": node.name[:_NAME_MAX],
        "address": str(address)[:_ADDRESS_MAX] if address else None,
        "country_code": node.country_code.strip().upper() if country else None,
        "country": country.name if country else None,
        "latitude": country.latitude if country else None,
        "longitude": country.longitude if country else None,
    }


def upsert_statement(rows: Sequence[dict[str, Any]]) -> ReturningInsert[tuple[str]]:
    """``INSERT ... ON CONFLICT (node_uuid) DO UPDATE ... WHERE`` something differs, returning the
    uuid of every row inserted or updated (an unchanged row returns nothing)."""
    stmt = insert(ServerGeolocation).values(list(rows))
    new, old = stmt.excluded, _TABLE.c
    moved = old.country_code.is_distinct_from(new.country_code)
    unplaced = or_(old.latitude.is_(None), old.longitude.is_(None))
    place = or_(moved, unplaced)
    return stmt.on_conflict_do_update(
        index_elements=[old.node_uuid],
        set_={
            "name": new.name,
            "address": new.address,
            "country_code": new.country_code,
            "country": new.country,
            "city": case((moved, None), else_=old.city),
            "region": case((moved, None), else_=old.region),
            "latitude": case((place, new.latitude), else_=old.latitude),
            "longitude": case((place, new.longitude), else_=old.longitude),
            "updated_at": func.now(),
        },
        where=or_(
            tuple_(old.name, old.address, old.country_code, old.country).is_distinct_from(
                tuple_(new.name, new.address, new.country_code, new.country)
            ),
            and_(unplaced, new.latitude.is_not(None)),
        ),
    ).returning(old.node_uuid)


def sync_geolocations(database: Database, nodes: Sequence[Node]) -> dict[str, int]:
    """Upsert one row per node and delete the rows of nodes gone from the panel; the counts."""
    rows = {n.uuid: row_of(n) for n in nodes}
    unknown = [n for n in nodes if rows[n.uuid]["country_code"] is None]
    if unknown:
        log.warning("%s: %d node(s) with an empty or unknown country code, stored without a place: %s",
                    JOB, len(unknown), _names(unknown))  # fmt: skip
    with database.transaction() as s:
        existing = set(s.scalars(select(ServerGeolocation.node_uuid)))
        written: set[str] = set()
        for chunk in _chunks(list(rows.values())):
            written.update(s.scalars(upsert_statement(chunk)))
        removed = _remove_gone(s, existing - set(rows), listed=len(rows))
    return {
        "inserted": len(written - existing),
        "updated": len(written & existing),
        "unchanged": len(rows) - len(written),
        "removed": removed,
        "unknown_country": len(unknown),
    }


def _remove_gone(session: Session, gone: set[str], *, listed: int) -> int:
    if not gone:
        return 0
    if not listed:
        log.warning("%s: the panel lists no node at all; keeping the %d rows of server_geolocations "
                    "(check REMNAWAVE_URL)", JOB, len(gone))  # fmt: skip
        return 0
    deleted = session.execute(delete(ServerGeolocation).where(ServerGeolocation.node_uuid.in_(gone)))
    return int(getattr(deleted, "rowcount", 0) or 0)


def _chunks(rows: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(rows), ROWS_PER_STATEMENT):
        yield rows[start : start + ROWS_PER_STATEMENT]


def _names(nodes: Sequence[Node], shown: int = 20) -> str:
    listed = ", ".join(f"{n.name} ({n.uuid}, {n.country_code!r})" for n in nodes[:shown])
    return listed + (f" and {len(nodes) - shown} more" if len(nodes) > shown else "")


@dramatiq.actor(queue_name=QUEUE, store_results=True)
def sync_server_geolocations() -> dict[str, Any]:
    """Every panel node's place in ``server_geolocations`` from the static country table (every 6 h)."""
    runtime = get_runtime()
    started = time.monotonic()
    counts = sync_geolocations(runtime.database, runtime.remnawave.nodes())
    return job_done(JOB, counts, started)
