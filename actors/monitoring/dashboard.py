"""The monitoring domain's dashboard page and overview tiles (registered in :mod:`actors.monitoring`).

* ``GET /nodes`` — one card per VPN node (refreshes every 10 s): its status (green online, amber
  warning, grey maintenance, red offline), flapping or offline incident, name, address and country,
  its last status change, its downtime today and a sparkline of its traffic over the last
  :data:`SPARK_WINDOW_S`; under the cards, the dependencies as ``check_external_services`` last
  found them;
* tiles ``nodes`` (``2 of 12 down``, red while any node is offline) and ``services`` (``all 5 up`` /
  ``telegram down``, red while any is down).

Everything is read from what the jobs already store (no panel call): the node states and their
change history (``cybervpn:health:<uuid>:current`` / ``:history``, :mod:`.health`), the bandwidth
snapshots (``cybervpn:bandwidth:<uuid>:snapshots``, :mod:`.bandwidth`), the service states
(``cybervpn:health:services:<name>``, :mod:`.services`) and the sync domain's ``server_geolocations``
rows (address, country, city). A page reads, per node, today's changes and its snapshots summed per
15 minutes inside Redis (a short string, however many snapshots: :data:`_WINDOW`), each in one
pipeline, and the places in one indexed query (``node_uuid`` is unique).

**Downtime today** is the time spent ``offline`` since 00:00 UTC, from the node's history: the
status before the day's first change is that change's ``from``; a node with no change today has
been in its current status since ``max(midnight, since)``. Only ``offline`` counts (``warning`` is
the panel still connecting, ``maintenance`` an admin's choice). A node first seen today that has
changed since is counted from midnight in its first ``from`` status (its first sighting is not in
the history).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis
from flask import Blueprint
from markupsafe import Markup
from sqlalchemy import text

from actors.monitoring.bandwidth import snapshots_key
from actors.monitoring.health import duration_text, history_key, stored_states
from actors.monitoring.node_state import MAINTENANCE, OFFLINE, ONLINE, WARNING, NodeState
from actors.monitoring.services import SERVICES, service_key
from actors.reports.markup import size
from worker_app.days import day_start
from worker_app.db import Database
from worker_app.runtime import Runtime
from worker_app.web.charts import sparkline
from worker_app.web.dashboard import page
from worker_app.web.overview import Tile

SPARK_WINDOW_S = 6 * 3600
SPARK_BUCKET_S = 900
"""The sparkline: the last 6 h in 15-minute points (bytes per second; a gap where no snapshot fell)."""
SERVICE_STALE_S = 300
"""A service probe older than this (the job runs every 60 s) is shown as stale."""
_SERVICE_FIELDS = ("latency_ms", "error", "failures", "since", "checked_at")
_ORDER = {OFFLINE: 0, WARNING: 1, ONLINE: 2, MAINTENANCE: 3}
_WINDOW = """
local start, step, n = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local used, spans, total = {}, {}, 0
for i = 1, n do used[i], spans[i] = 0, 0 end
for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], start, '+inf')) do
  local snap = cjson.decode(member)
  local since = type(snap.since) == 'number' and snap.since or snap.at
  local i = math.floor((snap.at - tonumber(start)) / step) + 1
  if i >= 1 and i <= n then
    used[i] = used[i] + snap.bytes
    spans[i] = spans[i] + math.max(snap.at - since, 1)
  end
  total = total + snap.bytes
end
local out = {string.format('%.0f', total)}
for i = 1, n do
  out[#out + 1] = string.format('%.0f', used[i])
  out[#out + 1] = string.format('%.0f', spans[i])
end
return table.concat(out, ',')
"""
"""One node's snapshots since ARGV[1] summed per bucket of ARGV[2] s (ARGV[3] buckets):
``total,bytes1,seconds1,bytes2,seconds2,…`` — the bytes of the snapshots ending in each bucket and
the seconds they cover. Decoded in Redis, so a page reads a few hundred bytes per node, not every
snapshot."""
_PLACES = text(
    "SELECT node_uuid, address, country_code, country, city FROM server_geolocations "
    "WHERE node_uuid = ANY(:uuids)"
)


@dataclass(frozen=True)
class NodeCard:
    """One node as its card shows it."""

    state: NodeState
    place: dict[str, Any]
    downtime_s: float
    spark: Markup
    window_bytes: int

    @property
    def downtime(self) -> str:
        return duration_text(self.downtime_s) if self.downtime_s >= 1 else "none"

    @property
    def traffic(self) -> str:
        return size(self.window_bytes)


def utc_midnight(now: float) -> float:
    """The start of ``now``'s UTC day (unix s)."""
    return day_start(now).timestamp()


def downtime_s(changes: Sequence[dict[str, Any]], state: NodeState, *, start: float, now: float) -> float:
    """Seconds ``offline`` between ``start`` and ``now``, from the changes after ``start`` (oldest
    first) and the node's current state (see the module docstring)."""
    if changes:
        status, since = changes[0].get("from"), start
    else:
        status, since = state.status, max(start, state.since)
    down = 0.0
    for change in changes:
        at = min(max(float(change["at"]), since), now)
        if status == OFFLINE:
            down += at - since
        status, since = change.get("status"), at
    if status == OFFLINE:
        down += max(0.0, now - since)
    return down


def rates(sums: Sequence[float]) -> list[int | None]:
    """Bytes per second of each bucket from its ``(bytes, seconds)`` pair (flattened), ``None`` for a
    bucket no snapshot ended in."""
    return [round(used / span) if span else None for used, span in zip(sums[::2], sums[1::2], strict=True)]


def bandwidth_window(
    client: redis.Redis, uuids: Sequence[str], now: float
) -> dict[str, tuple[int, list[int | None]]]:
    """Per node: bytes carried in the last :data:`SPARK_WINDOW_S` and its rate per bucket (oldest
    first). Summed inside Redis (:data:`_WINDOW`), one short string per node, in one round trip."""
    script = client.register_script(_WINDOW)
    args: list[str | int] = [repr(now - SPARK_WINDOW_S), SPARK_BUCKET_S, SPARK_WINDOW_S // SPARK_BUCKET_S]
    with client.pipeline(transaction=False) as pipe:
        for uuid in uuids:
            script(keys=[snapshots_key(uuid)], args=args, client=pipe)
        read = pipe.execute()
    found = {}
    for uuid, raw in zip(uuids, read, strict=True):
        total, *sums = (float(v) for v in str(raw).split(","))
        found[uuid] = (int(total), rates(sums))
    return found


def node_cards(runtime: Runtime, now: float) -> list[NodeCard]:
    """Every node the health job knows (gone ones excepted), trouble first, then by name."""
    states = sorted(stored_states(runtime.redis).values(), key=lambda s: (_ORDER.get(s.status, 4), s.name))
    if not states:
        return []
    start = utc_midnight(now)
    with runtime.redis.pipeline(transaction=False) as pipe:
        for state in states:
            pipe.zrangebyscore(history_key(state.uuid), start, "+inf")
        histories = pipe.execute()
    traffic = bandwidth_window(runtime.redis, [s.uuid for s in states], now)
    places = _places(runtime.database, [s.uuid for s in states])
    cards = []
    for state, history in zip(states, histories, strict=True):
        window_bytes, series = traffic[state.uuid]
        peak = max((v for v in series if v is not None), default=0)
        title = f"{state.name}: bytes/s over the last {SPARK_WINDOW_S // 3600} h, peak {size(peak)}/s"
        downtime = downtime_s([json.loads(m) for m in history], state, start=start, now=now)
        spark = sparkline(series, width=220, height=32, title=title)
        cards.append(NodeCard(state, places.get(state.uuid, {}), downtime, spark, window_bytes))
    return cards


def _places(database: Database, uuids: list[str]) -> dict[str, dict[str, Any]]:
    """The ``server_geolocations`` row of each node that has one."""
    with database.transaction() as s:
        return {r.node_uuid: dict(r._mapping) for r in s.execute(_PLACES, {"uuids": uuids})}


def service_states(runtime: Runtime) -> list[dict[str, Any]]:
    """Each probed service's last state (``status`` ``unknown`` when none is stored: no probe in a
    day), with ``stale`` when its probe is older than :data:`SERVICE_STALE_S`."""
    raw = runtime.redis.mget([service_key(name) for name in SERVICES])
    now = time.time()
    found = []
    for name, stored in zip(SERVICES, raw, strict=True):
        state = {**dict.fromkeys(_SERVICE_FIELDS), "name": name, "status": "unknown"}
        state.update(json.loads(stored) if stored else {})
        checked = state["checked_at"]
        state["stale"] = checked is not None and now - float(checked) > SERVICE_STALE_S
        found.append(state)
    return found


def add_pages(runtime: Runtime) -> tuple[Blueprint, list[tuple[str, str]]]:
    """``GET /nodes`` (see the module docstring)."""
    pages = Blueprint("monitoring", __name__, template_folder="dashboard_templates")

    @pages.get("/nodes")
    def nodes() -> str:
        now = time.time()
        cards = node_cards(runtime, now)
        counts: dict[str, int] = {}
        for card in cards:
            counts[card.state.status] = counts.get(card.state.status, 0) + 1
        return page("monitoring/nodes.html", "Nodes", refresh=10, cards=cards, counts=counts,
                    services=service_states(runtime), midnight=utc_midnight(now),
                    window_h=SPARK_WINDOW_S // 3600)  # fmt: skip

    return pages, [("Nodes", ".nodes")]


def tiles(runtime: Runtime) -> list[Tile]:
    """The overview's ``nodes`` and ``services`` tiles."""
    return [_nodes_tile(runtime), _services_tile(runtime)]


def _nodes_tile(runtime: Runtime) -> Tile:
    states = list(stored_states(runtime.redis).values())
    down = sorted(s.name for s in states if s.status == OFFLINE)
    others = {status: sum(s.status == status for s in states) for status in (WARNING, MAINTENANCE)}
    if down:
        detail = ", ".join(down[:3]) + (f" and {len(down) - 3} more" if len(down) > 3 else "")
    else:
        detail = ", ".join(f"{n} {status}" for status, n in others.items() if n)
    value = f"{len(down)} of {len(states)} down" if states else "no node seen"
    return Tile("nodes", "Nodes", value, bool(down), "/nodes", detail or None)


def _services_tile(runtime: Runtime) -> Tile:
    states = service_states(runtime)
    down = [s["name"] for s in states if s["status"] == "down"]
    probed = [s for s in states if s["status"] != "unknown"]
    if not probed:
        return Tile("services", "Services", "no probe", False, "/nodes#services",
                    "check_external_services has stored no state in the last day")  # fmt: skip
    value = f"{', '.join(down)} down" if down else f"all {len(probed)} up"
    if any(s["stale"] for s in probed):
        value += " (stale)"
    detail = " · ".join(
        f"{s['name']} {s['status']}" + (f" ({s['failures']} in a row)" if s["status"] == "down" else "")
        for s in states
    )
    return Tile("services", "Services", value, bool(down), "/nodes#services", detail)
