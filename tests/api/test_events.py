"""GET /api/v1/events on a real ``worker-app serve``: a node change found by a health run reaches a
subscriber as a Server-Sent Event; no token, no stream; the dashboard's login is enough for a
browser's EventSource; the number of streams is capped."""

from __future__ import annotations

import json
import queue
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from actors.monitoring.health import Options, check_health
from tests.fixtures.api import serving
from tests.fixtures.remnawave import Panel
from tests.fixtures.worker import wait_for
from tests.monitoring.test_health import add_nodes, set_state
from worker_app.runtime import Runtime

TOKEN = "events-test-token-42"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def server(tmp_path: Path, redis_client: Any, migrated_database: str) -> Iterator[str]:
    with serving(
        tmp_path / "serve.log",
        {"API_TOKEN": TOKEN, "API_EVENTS_MAX_CLIENTS": "2", "API_EVENTS_KEEPALIVE_S": "0.5"},
    ) as base:
        yield base


class Subscriber:
    """A streaming GET read on a thread: each SSE event (``event`` and parsed ``data``) into a queue."""

    def __init__(self, url: str, session: requests.Session | None = None, **kwargs: Any) -> None:
        self.response = (session or requests).get(url, stream=True, timeout=30, **kwargs)
        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.comments: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        kind, data = "message", []
        try:
            for line in self.response.iter_lines(decode_unicode=True):
                if line.startswith(":"):
                    self.comments.append(line)
                elif line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    data.append(line[6:])
                elif line == "" and data:
                    self.events.put((kind, json.loads("\n".join(data))))
                    kind, data = "message", []
        except (requests.RequestException, AttributeError, ValueError):
            return

    def next(self, kind: str, timeout_s: float = 10) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            found, data = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            if found == kind:
                return dict(data)

    def connected(self) -> None:
        wait_for(lambda: self.comments, 10, "the stream's first comment", poll_s=0.02)
        assert self.comments[:1] == [": connected"], self.comments

    def close(self) -> None:
        self.response.close()


def test_a_node_change_reaches_a_subscriber_and_strangers_get_401(
    server: str, panel: Panel, panel_runtime: Runtime
) -> None:
    # Given a subscriber with the token, and one node seen online
    [uuid] = add_nodes(panel, 1)
    nodes, redis_client, alerts = panel_runtime.remnawave.nodes, panel_runtime.redis, panel_runtime.alerts
    check_health(nodes(), redis_client, alerts, now=time.time(), options=Options())
    subscriber = Subscriber(f"{server}/api/v1/events", headers=AUTH)
    assert subscriber.response.status_code == 200
    assert subscriber.response.headers["Content-Type"].startswith("text/event-stream")
    assert subscriber.response.headers["Cache-Control"] == "no-cache"
    subscriber.connected()
    try:
        # When the node goes offline and a health run finds it
        set_state(panel, uuid, "offline")
        found_at = time.time()
        check_health(nodes(), redis_client, alerts, now=found_at, options=Options())
        # Then the subscriber sees the change, and the incident opened
        change = subscriber.next("node_status")
        assert (change["node"], change["old"], change["new"]) == (uuid, "online", "offline")
        assert change["at"] == found_at and change["name"] == "node-0"
        opened = subscriber.next("alert_opened")
        assert opened["key"] == f"monitoring.node_offline.{uuid}"
    finally:
        subscriber.close()

    # And without the token, or with a wrong one, there is no stream
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        refused = requests.get(f"{server}/api/v1/events", headers=headers, timeout=10)
        assert refused.status_code == 401 and "bearer token" in refused.json()["error"]
    url_token = requests.get(f"{server}/api/v1/events?access_token={TOKEN}", timeout=10)
    assert url_token.status_code == 401


def test_a_dashboard_login_opens_the_stream_for_a_browser(server: str, redis_client: Any) -> None:
    session = requests.Session()
    login_page = session.get(f"{server}/login", timeout=10).text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', login_page)
    assert csrf is not None
    session.post(f"{server}/login", data={"token": TOKEN, "csrf_token": csrf.group(1)}, timeout=10)
    subscriber = Subscriber(f"{server}/api/v1/events", session=session)
    try:
        assert subscriber.response.status_code == 200
        subscriber.connected()
        redis_client.publish("cybervpn:events", json.dumps({"type": "service_status", "service": "redis"}))
        assert subscriber.next("service_status")["service"] == "redis"
    finally:
        subscriber.close()


def test_streams_beyond_the_cap_get_503_and_a_closed_one_frees_its_place(server: str) -> None:
    first, second = (Subscriber(f"{server}/api/v1/events", headers=AUTH) for _ in range(2))
    for subscriber in (first, second):
        subscriber.connected()
    third = requests.get(f"{server}/api/v1/events", headers=AUTH, timeout=10)
    assert third.status_code == 503 and "API_EVENTS_MAX_CLIENTS=2" in third.json()["error"]
    first.close()
    second.close()

    def admitted() -> bool:  # a stream notices its client left at its next write (a keepalive)
        again = requests.get(f"{server}/api/v1/events", headers=AUTH, timeout=10, stream=True)
        again.close()
        return again.status_code == 200

    wait_for(admitted, 20, "a closed stream to give its place back", poll_s=0.5)
