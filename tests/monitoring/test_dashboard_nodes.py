"""The Nodes page and the ``nodes`` / ``services`` overview tiles, read from what the monitoring jobs
store: node states and history written by ``check_health``, bandwidth snapshots by
``collect_snapshots``, service states by ``ServiceMonitor``, places by the sync domain's
``sync_geolocations``. Real Redis and PostgreSQL, the dashboard through Flask's test client."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any, TypeVar

import redis
import sqlalchemy as sa
from flask.testing import FlaskClient

from actors.monitoring.bandwidth import collect_snapshots
from actors.monitoring.dashboard import bandwidth_window, downtime_s, utc_midnight
from actors.monitoring.health import Options, check_health
from actors.monitoring.node_state import NodeState
from actors.monitoring.services import ServiceMonitor, default_probes
from actors.sync.geolocations import sync_geolocations
from tests.fixtures.notifications import MakeRuntime
from tests.fixtures.ports import free_port
from worker_app.clients.remnawave import Node
from worker_app.runtime import Runtime
from worker_app.web.overview import Tile, domain_tiles

T = TypeVar("T")
FLAGS = {  # connected, connecting, disabled
    "online": (True, False, False),
    "offline": (False, False, False),
    "warning": (False, True, False),
    "maintenance": (False, False, True),
}


def on_one_utc_day(scenario: Callable[[float], T]) -> T:
    """``scenario(midnight)`` with today's UTC midnight — run again from the start if the UTC day
    turned while it ran (its "today" figures would belong to the day before). Each scenario begins
    by clearing what it seeds."""
    for _ in range(2):
        midnight = utc_midnight(time.time())
        result = scenario(midnight)
        if utc_midnight(time.time()) == midnight:
            return result
    raise AssertionError("the UTC day turned twice during one test")


def tile(runtime: Runtime, key: str) -> Tile:
    [found] = [t for t in domain_tiles(runtime) if t.key == key]
    return found


def client_of(runtime: Runtime) -> FlaskClient:
    import worker_app
    from worker_app.web.api import create_app

    return create_app(runtime, worker_app.broker).test_client()


def node(uuid: str, status: str, used: int = 0) -> Node:
    connected, connecting, disabled = FLAGS[status]
    return Node(uuid, uuid, "DE", connected, connecting, disabled, traffic_used_bytes=used, users_online=0,
                raw={"address": f"{uuid}.example.net"})  # fmt: skip


def card(html: str, uuid: str) -> str:
    start = html.index(f'id="node-{uuid}"')
    return html[start : html.index("</section>", start)]


def seconds_in(card_html: str) -> int:
    found = re.search(r'class="downtime" data-seconds="(\d+)"', card_html)
    assert found is not None, card_html
    return int(found.group(1))


def test_downtime_today_counts_offline_time_since_midnight_only() -> None:
    midnight = 1_800_000_000.0 - 1_800_000_000.0 % 86_400
    state = NodeState("n", "n", "online", since=midnight + 600, checked_at=midnight + 900)
    # down from the day before until 10 min past midnight, then down again 20 s until 12 min past
    changes = [{"from": "offline", "status": "online", "at": midnight + 600},
               {"from": "online", "status": "offline", "at": midnight + 700},
               {"from": "offline", "status": "online", "at": midnight + 720}]  # fmt: skip
    assert downtime_s(changes, state, start=midnight, now=midnight + 900) == 620
    # down since before midnight and still: the whole day so far
    down = NodeState("n", "n", "offline", since=midnight - 60, checked_at=midnight + 900)
    assert downtime_s([], down, start=midnight, now=midnight + 900) == 900
    # first seen today, offline: since it was first seen
    new = NodeState("n", "n", "offline", since=midnight + 800, checked_at=midnight + 800)
    assert downtime_s([], new, start=midnight, now=midnight + 900) == 100
    # warning and maintenance are not down
    flaky = NodeState("n", "n", "warning", since=midnight + 400, checked_at=midnight + 900)
    changes = [{"from": "warning", "status": "offline", "at": midnight + 100},
               {"from": "offline", "status": "warning", "at": midnight + 400}]  # fmt: skip
    assert downtime_s(changes, flaky, start=midnight, now=midnight + 900) == 300
    grey = NodeState("n", "n", "maintenance", since=midnight - 60, checked_at=midnight + 900)
    assert downtime_s([], grey, start=midnight, now=midnight + 900) == 0


def test_the_sparkline_is_the_mean_rate_per_quarter_hour_with_gaps_where_nothing_was_sampled(
    redis_client: redis.Redis,
) -> None:
    # Given 1 GB carried 7 h ago, nothing sampled for 6 h, then 270 kB, 300 kB and after a counter
    # reset 120 kB (the window is the last 6 h, in 15-minute buckets)
    now = 1_800_000_000.0
    counters = [(-25_500, 0), (-25_200, 10**9), (-2_700, 10**9 + 270_000), (-2_400, 10**9 + 570_000),
                (-600, 120_000)]  # fmt: skip
    for ago, used in counters:
        collect_snapshots([node("n1", "online", used)], redis_client, now=now + ago, retention_h=48)
    [(total, series)] = bandwidth_window(redis_client, ["n1"], now).values()
    # Then the window sums the last three, and each bucket is bytes over the seconds its snapshots span
    assert total == 690_000 and len(series) == 24
    assert series[21] == round(570_000 / (22_500 + 300)) and series[23] == round(120_000 / 1_800)
    assert series[:21] == [None] * 21 and series[22] is None
    assert bandwidth_window(redis_client, ["never-seen"], now)["never-seen"] == (0, [None] * 24)


def test_the_nodes_page_shows_each_node_with_its_status_place_downtime_today_and_traffic(
    runtime: Runtime, redis_client: redis.Redis, clean_tables: sa.Engine
) -> None:
    def scenario(midnight: float) -> tuple[str, float, float]:
        redis_client.flushdb()
        with clean_tables.begin() as conn:
            conn.execute(sa.text("DELETE FROM server_geolocations"))
        options = Options(history_days=7)
        back_at = midnight + min(600.0, (time.time() - midnight) / 2)
        # Given fra-1 offline from 10 min before midnight until back_at, ams-1 offline since then,
        # waw-1 in maintenance throughout, new-1 first seen (connecting) at back_at
        runs = [(midnight - 1200, {"fra-1": "online", "ams-1": "online", "waw-1": "maintenance"}),
                (midnight - 600, {"fra-1": "offline", "ams-1": "offline", "waw-1": "maintenance"}),
                (back_at, {"fra-1": "online", "ams-1": "offline", "waw-1": "maintenance",
                           "new-1": "warning"})]  # fmt: skip
        for at, statuses in runs:
            check_health([node(u, s) for u, s in statuses.items()], redis_client, runtime.alerts, now=at,
                         options=options)  # fmt: skip
        sync_geolocations(runtime.database, [node(u, "online") for u in ("fra-1", "ams-1")])
        # And fra-1 carried 300,000 then 600,000 bytes in two 5-minute intervals
        now = time.time()
        for at, used in ((now - 900, 1_000), (now - 600, 301_000), (now - 300, 901_000)):
            collect_snapshots([node("fra-1", "online", used)], redis_client, now=at, retention_h=48)
        # When the page is fetched
        before = time.time()
        page = client_of(runtime).get("/nodes")
        assert page.status_code == 200
        return page.text, back_at - midnight, before - midnight

    html, fra_down, ams_down_before = on_one_utc_day(scenario)
    # Then each node has its card, trouble first, with its status colour and place
    cards = re.findall(r'<section class="card status-(\w+)" id="node-([\w-]+)"', html)
    assert cards == [("offline", "ams-1"), ("warning", "new-1"), ("online", "fra-1"),
                     ("maintenance", "waw-1")]  # fmt: skip
    fra, ams, waw, new = (card(html, u) for u in ("fra-1", "ams-1", "waw-1", "new-1"))
    assert '<dd class="address">fra-1.example.net</dd>' in fra and "Germany (DE)" in fra
    assert '<dd class="address">-</dd>' in waw
    assert '<span class="incident"' in ams and ">offline</span>" in ams and ">incident open</span>" in ams
    # And the downtime since midnight: fra-1's ended at back_at, ams-1's still runs, the others none
    assert abs(seconds_in(fra) - fra_down) <= 1
    assert ams_down_before - 1 <= seconds_in(ams) <= ams_down_before + 5
    assert seconds_in(waw) == 0 and seconds_in(new) == 0
    # And fra-1's traffic over the window, with its sparkline
    assert 'data-bytes="900000"' in fra and "878.9 KiB" in fra
    assert '<svg class="sparkline"' in fra and "<polyline" in fra
    assert "<polyline" not in waw
    assert '<a href="/nodes">Nodes</a>' in html


def test_the_nodes_tile_turns_red_while_a_node_is_offline(
    runtime: Runtime, redis_client: redis.Redis, clean_tables: sa.Engine
) -> None:
    assert tile(runtime, "nodes") == Tile("nodes", "Nodes", "no node seen", False, "/nodes", None)
    now = time.time()
    nodes = [node("a-1", "online"), node("b-1", "online"), node("c-1", "maintenance")]
    check_health(nodes, redis_client, runtime.alerts, now=now - 60, options=Options())
    healthy = tile(runtime, "nodes")
    assert (healthy.value, healthy.trouble, healthy.detail) == ("0 of 3 down", False, "1 maintenance")
    nodes[0] = node("a-1", "offline")
    check_health(nodes, redis_client, runtime.alerts, now=now, options=Options())
    down = tile(runtime, "nodes")
    assert (down.value, down.trouble, down.detail, down.href) == ("1 of 3 down", True, "a-1", "/nodes")


def test_the_services_tile_names_a_dependency_down_and_the_page_lists_every_probe(
    make_runtime: MakeRuntime, redis_client: redis.Redis, rabbitmq_vhost: str
) -> None:
    # Given the five real probes, the panel's pointing at a port nothing listens on
    runtime = make_runtime(REMNAWAVE_URL=f"http://127.0.0.1:{free_port()}")
    probes: dict[str, Any] = default_probes(runtime, 2.0)
    monitor = ServiceMonitor(redis_client, runtime.alerts, down_after=3)
    assert tile(runtime, "services").value == "no probe"
    # When everything but the panel answers
    monitor.run({n: p for n, p in probes.items() if n != "remnawave"}, 2.0, time.time())
    up = tile(runtime, "services")
    assert (up.value, up.trouble) == ("all 4 up", False) and "remnawave unknown" in (up.detail or "")
    # And then the panel fails three probes in a row
    for _ in range(3):
        monitor.run(probes, 2.0, time.time())
    down = tile(runtime, "services")
    assert (down.value, down.trouble, down.href) == ("remnawave down", True, "/nodes#services")
    assert "remnawave down (3 in a row)" in (down.detail or "") and "rabbitmq up" in (down.detail or "")
    # Then the page's services table says the same, with the error
    html = client_of(runtime).get("/nodes").text
    row = html[html.index('id="service-remnawave"') :].split("</tr>")[0]
    assert 'class="service-down"' in row and "<td>3</td>" in row and "Remnawave" in row
    assert 'class="service-up"' in html[html.index('id="service-rabbitmq"') - 40 :][:80]
