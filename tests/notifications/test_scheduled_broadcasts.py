"""Scheduled broadcasts (seed 001): rows wait in PostgreSQL until their time; listed, sent now or
cancelled meanwhile; totals on the broadcast row. Real middleware on the StubBroker, real PostgreSQL
and Redis, the sandbox's Telegram over HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import dramatiq
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from dramatiq.brokers.stub import StubBroker

from actors.notifications import broadcast_message
from actors.notifications.broadcast import start_time
from actors.notifications.scheduled import list_broadcasts, send_now
from sandbox.server import RunningSandbox
from worker_app.runtime import Runtime
from worker_app.telegram.text import NotificationRejected

QUEUE = "notifications"


def drain(broker: StubBroker, worker: dramatiq.Worker) -> None:
    broker.join(QUEUE, fail_fast=False)
    worker.join()


def test_a_scheduled_broadcast_waits_then_is_sent_now_with_its_totals_on_its_row(
    runtime: Runtime, stub_broker: StubBroker, stub_worker: dramatiq.Worker, sandbox: RunningSandbox,
    db_engine: sa.Engine, redis_client: Any,
) -> None:  # fmt: skip
    later = (datetime.now(UTC) + timedelta(hours=2)).replace(microsecond=0)
    message = broadcast_message.send([2201, 2202, 2203], "Maintenance tomorrow", "maintenance", "HTML",
                                     later.isoformat())  # fmt: skip
    drain(stub_broker, stub_worker)
    broadcast_id = message.get_result(block=True, timeout=5000)["broadcast_id"]
    # the rows are in, not due: the drain the broadcast kicked sent nothing
    assert sandbox.state.received() == []
    [row] = list_broadcasts(runtime.database, "scheduled")
    assert (row.broadcast_id, row.state, row.total, row.scheduled_at) == (broadcast_id, "scheduled", 3, later)
    with db_engine.connect() as conn:
        due = conn.execute(sa.text("SELECT DISTINCT scheduled_at FROM notification_queue")).scalars().all()
    assert due == [later]

    assert send_now(runtime.database, broadcast_id) == 3
    drain(stub_broker, stub_worker)
    assert sorted(e["chat_id"] for e in sandbox.state.received()) == [2201, 2202, 2203]
    [done] = list_broadcasts(runtime.database, "done")
    assert (done.broadcast_id, done.total, done.sent, done.failed) == (broadcast_id, 3, 3, 0)
    assert send_now(runtime.database, broadcast_id) is None  # not scheduled any more


def test_a_scheduled_broadcast_cancelled_before_its_time_sends_nothing(
    runtime: Runtime, stub_broker: StubBroker, stub_worker: dramatiq.Worker, sandbox: RunningSandbox,
    db_engine: sa.Engine,
) -> None:  # fmt: skip
    from worker_app.jobs import cancel_job

    later = datetime.now(UTC) + timedelta(days=1)
    message = broadcast_message.send([2301, 2302], "Promo", "promo", "HTML", later.isoformat())
    drain(stub_broker, stub_worker)
    broadcast_id = message.get_result(block=True, timeout=5000)["broadcast_id"]
    result = cancel_job(runtime.database, broadcast_id, by="test")
    assert result.outcome != "unknown", result
    drain(stub_broker, stub_worker)
    assert [b.state for b in list_broadcasts(runtime.database)] == ["cancelled"]
    assert send_now(runtime.database, broadcast_id) is None
    assert sandbox.state.received() == []


def test_start_times() -> None:
    now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    assert start_time(None, now) is None
    assert start_time("2026-12-07T11:00:00Z", now) is None  # past: at once
    assert start_time("2026-12-07T15:00", now) == datetime(2026, 12, 7, 15, 0, tzinfo=UTC)  # UTC by default
    assert start_time("2026-12-07T15:30+03:00", now) == datetime(2026, 12, 7, 12, 30, tzinfo=UTC)
    with pytest.raises(NotificationRejected, match="scheduled_at: expected an ISO 8601 time"):
        start_time("tomorrow", now)
    with pytest.raises(NotificationRejected, match="more than 366 days ahead"):
        start_time("2028-01-01T00:00", now)


def test_the_cli_schedules_lists_and_refuses_a_bad_time(runtime: Runtime, db_engine: sa.Engine) -> None:
    from worker_app.cli import main

    bad = CliRunner().invoke(main, ["notifications", "broadcast", "1", "-m", "hi", "--at", "soon"])
    assert bad.exit_code == 2 and "scheduled_at: expected an ISO 8601 time, not 'soon'" in bad.output
    listed = CliRunner().invoke(main, ["notifications", "broadcasts", "--state", "scheduled"])
    assert listed.exit_code == 0 and "BROADCAST" in listed.output
    missing = CliRunner().invoke(main, ["notifications", "send-now", "nope"])
    assert missing.exit_code == 1 and "nope is not a scheduled broadcast" in missing.output


def test_the_api_lists_and_starts_a_scheduled_broadcast(
    runtime: Runtime, stub_broker: StubBroker, stub_worker: dramatiq.Worker, sandbox: RunningSandbox,
) -> None:  # fmt: skip
    from worker_app.web.api import create_app

    later = datetime.now(UTC) + timedelta(hours=5)
    message = broadcast_message.send([2401], "Soon", "promo", "HTML", later.isoformat())
    drain(stub_broker, stub_worker)
    broadcast_id = message.get_result(block=True, timeout=5000)["broadcast_id"]
    client = create_app(runtime, stub_broker).test_client()  # loopback, no API_TOKEN: no token asked

    listed = client.get("/api/v1/broadcasts?state=scheduled").json
    assert listed is not None and [b["broadcast_id"] for b in listed["items"]] == [broadcast_id]
    assert listed["items"][0]["state"] == "scheduled" and listed["items"][0]["total"] == 1
    assert client.get("/api/v1/broadcasts?state=nope").status_code == 422

    started = client.post(f"/api/v1/broadcasts/{broadcast_id}/send-now")
    assert (started.status_code, started.json) == (200, {"broadcast_id": broadcast_id, "rows_due": 1})
    again = client.post(f"/api/v1/broadcasts/{broadcast_id}/send-now")
    assert again.status_code == 409 and "is sending, not scheduled" in again.json["error"]  # type: ignore[index]
    assert client.post("/api/v1/broadcasts/unknown/send-now").status_code == 404
    drain(stub_broker, stub_worker)
    assert [e["chat_id"] for e in sandbox.state.received()] == [2401]
    doc = client.get("/api/v1/openapi.json").json
    assert {"/api/v1/broadcasts", "/api/v1/broadcasts/{broadcast_id}/send-now"} <= set(doc["paths"])  # type: ignore[index]


def test_the_dashboard_lists_a_scheduled_broadcast_sends_it_now_and_links_its_cancellation(
    runtime: Runtime, stub_broker: StubBroker, stub_worker: dramatiq.Worker, sandbox: RunningSandbox,
) -> None:  # fmt: skip
    import re

    from worker_app.web.api import create_app

    later = datetime.now(UTC) + timedelta(hours=3)
    message = broadcast_message.send([2401, 2402, 2403], "New servers", "promo", "HTML", later.isoformat())
    drain(stub_broker, stub_worker)
    broadcast_id = message.get_result(block=True, timeout=5000)["broadcast_id"]
    client = create_app(runtime, stub_broker).test_client()

    listing = client.get("/broadcasts")
    assert listing.status_code == 200 and '<a href="/broadcasts">Broadcasts</a>' in client.get("/queues").text
    row = listing.text[listing.text.index(f'id="broadcast-{broadcast_id}"') :].split("</tr>")[0]
    assert '<td class="state">scheduled</td>' in row and "<td>3</td>" in row
    assert f'action="/broadcasts/{broadcast_id}/send-now"' in row
    assert f'class="cancel" href="/jobs/{broadcast_id}/cancel"' in row
    assert client.get("/broadcasts?state=nope").status_code == 400
    assert f"broadcast-{broadcast_id}" not in client.get("/broadcasts?state=done").text

    forged = client.post(f"/broadcasts/{broadcast_id}/send-now", data={"csrf_token": "forged"})
    assert forged.status_code == 400 and list_broadcasts(runtime.database, "scheduled") != []
    found = re.search(r'name="csrf_token" value="([^"]+)"', listing.text)
    assert found is not None
    token = found.group(1)
    sent = client.post(
        f"/broadcasts/{broadcast_id}/send-now", data={"csrf_token": token}, follow_redirects=True
    )
    assert f"broadcast {broadcast_id} sends now: 3 row(s) due" in sent.text
    drain(stub_broker, stub_worker)
    assert sorted(e["chat_id"] for e in sandbox.state.received()) == [2401, 2402, 2403]
    done = client.get("/broadcasts?state=done").text
    row = done[done.index(f'id="broadcast-{broadcast_id}"') :].split("</tr>")[0]
    assert "send-now" not in row and "Cancel" not in row and "<td>3</td>" in row

    again = client.post(
        f"/broadcasts/{broadcast_id}/send-now", data={"csrf_token": token}, follow_redirects=True
    )
    assert f"broadcast {broadcast_id} is done, not scheduled: nothing changed" in again.text
    unknown = client.post("/broadcasts/no-such-id/send-now", data={"csrf_token": token})
    assert unknown.status_code == 404
