"""Tier 1/2: every Redis use on the notification path with Redis really unreachable — a client aimed
at a port nothing listens on, or a private ``redis-server`` the test kills and restarts (never the
shared one). Sends go on at the local rate, nothing raises, nothing is lost."""

from __future__ import annotations

import itertools
import logging
import time
from typing import Any

import dramatiq
import pytest
import redis
import sqlalchemy as sa
from dramatiq.brokers.stub import StubBroker

from actors.notifications import broadcast, process_notification_queue
from actors.notifications.slots import DrainerSlots
from sandbox.server import RunningSandbox
from tests.fixtures.notifications import (
    ADMIN_CHAT,
    MakeRuntime,
    PrivateRedis,
    insert_rows,
    rows,
    unreachable_redis_url,
)
from tests.fixtures.worker import wait_for
from worker_app.alerts import AdminAlerts
from worker_app.runtime import Runtime
from worker_app.telegram.ratelimit import GLOBAL_KEY, TelegramRateLimiter
from worker_app.telegram.sender import SENT

FALLBACK_LOG = "worker_app.redis_fallback"


@pytest.fixture
def dead_redis() -> redis.Redis:
    """A client whose Redis refuses every connection."""
    return redis.Redis.from_url(unreachable_redis_url(), decode_responses=True)


def fallback_lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    return [(r.levelname, r.getMessage()) for r in caplog.records if r.name == FALLBACK_LOG]


def test_the_limiter_falls_back_to_the_local_rate_and_warns_once(
    dead_redis: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    # Given limits of 30/s bot-wide and one send per 2 s per chat, a fallback of 5/s, and Redis down
    limiter = TelegramRateLimiter(dead_redis, global_per_s=30, per_chat_per_s=0.5, fallback_per_s=5)
    # When five chats reserve a slot
    with caplog.at_level(logging.INFO, logger=FALLBACK_LOG):
        slots = [limiter.reserve(chat, max_wait_s=5) for chat in range(5)]
        busy = limiter.reserve(0, max_wait_s=5)
    # Then they are booked 0.2 s apart (5/s, kept in this process), and a chat's own interval holds
    assert all(slot.booked for slot in slots)
    for i, slot in enumerate(slots):
        assert slot.wait_s == pytest.approx(0.2 * i, abs=0.05)
    assert not busy.booked and busy.wait_s > 1.5
    # And the outage is one warning naming the local rate, not one per reservation
    [(level, line)] = fallback_lines(caplog)
    assert level == "WARNING" and "telegram rate limits" in line and "5/s per process" in line


def test_the_limiter_goes_back_to_redis_when_it_answers_again(
    private_redis: PrivateRedis, caplog: pytest.LogCaptureFixture
) -> None:
    client = private_redis.client()
    limiter = TelegramRateLimiter(client, global_per_s=10, per_chat_per_s=0)
    limiter.redis_state.retry_s = 0.2
    with caplog.at_level(logging.INFO, logger=FALLBACK_LOG):
        assert limiter.reserve(1, max_wait_s=1).booked
        assert client.exists(GLOBAL_KEY)
        # When Redis dies, reservations go on locally
        private_redis.kill()
        assert limiter.reserve(2, max_wait_s=1).booked and limiter.redis_state.degraded
        # And when it is back (empty, as after a crash), they return to the shared schedule
        private_redis.start()
        wait_for(
            lambda: limiter.reserve(3, max_wait_s=1).booked and not limiter.redis_state.degraded,
            5, "the limiter to use Redis again",
        )  # fmt: skip
    assert private_redis.client().exists(GLOBAL_KEY)
    assert [level for level, _ in fallback_lines(caplog)] == ["WARNING", "INFO"]


def test_a_429_pause_holds_this_process_while_redis_is_down(dead_redis: redis.Redis) -> None:
    limiter = TelegramRateLimiter(dead_redis, global_per_s=0, per_chat_per_s=0)
    limiter.pause(3)
    assert 2.5 < limiter.paused_for() <= 3
    slot = limiter.reserve(7, max_wait_s=1)
    assert not slot.booked and slot.wait_s > 2


def test_a_redis_that_dies_mid_pause_does_not_cut_the_pause_short(private_redis: PrivateRedis) -> None:
    limiter = TelegramRateLimiter(private_redis.client(), global_per_s=30, per_chat_per_s=1)
    limiter.pause(3)
    private_redis.kill()
    assert 2.5 < limiter.paused_for() <= 3


def test_a_sender_whose_redis_is_unreachable_still_sends(
    make_runtime: MakeRuntime, sandbox: RunningSandbox
) -> None:
    runtime = make_runtime(REDIS_URL=unreachable_redis_url(), TELEGRAM_GLOBAL_RATE_PER_S="30")
    assert runtime.telegram_sender.send(11, "hi", None, max_wait_s=1).status == SENT
    assert [e["chat_id"] for e in sandbox.state.received()] == [11]


def test_drainer_slots_fail_open_to_one_drain_per_process(dead_redis: redis.Redis) -> None:
    slots = DrainerSlots(dead_redis, max_holders=2, ttl_s=60)
    assert slots.acquire("a") and slots.acquire("a")
    assert not slots.acquire("b"), "one drain per process while Redis is down"
    slots.release("a")  # never raises: a slot Redis still holds expires by itself
    assert slots.acquire("b")


def test_admin_alerts_are_deduplicated_per_process_while_redis_is_down(
    runtime: Runtime, sandbox: RunningSandbox, dead_redis: redis.Redis
) -> None:
    now = [1000.0]  # the alerts' clock, moved by hand
    alerts = AdminAlerts(dead_redis, runtime.telegram_sender, [ADMIN_CHAT], dedup_s=60, clock=lambda: now[0])
    # the first alert of an incident is sent, a repeat within the window is not, another incident is
    alerts.alert("redis.down", "Redis unreachable")
    assert alerts.flush(10)
    alerts.alert("redis.down", "Redis unreachable")
    alerts.alert("notifications.retries_exhausted", "3 notification(s) failed")
    assert alerts.flush(10)
    # when the window closes, one summary counts what it held back; the next alert opens a new one
    now[0] += 61
    alerts.alert("redis.down", "Redis still unreachable")
    assert alerts.flush(10)
    assert [e["text"] for e in sandbox.state.received()] == [
        "[WARNING] Redis unreachable",
        "[WARNING] 3 notification(s) failed",
        "[WARNING] 1 more in the last 1 min (window closed): Redis unreachable",
        "[WARNING] Redis still unreachable",
    ]
    alerts.close()


def test_broadcast_progress_is_skipped_while_redis_is_down_and_settled_when_it_is_back(
    runtime: Runtime, db_engine: sa.Engine, redis_client: Any, dead_redis: redis.Redis
) -> None:
    # Given a broadcast created while Redis is down: its first progress entry cannot be written
    with runtime.database.transaction() as session:
        created = broadcast.create_broadcast(
            session, "bc-1", [1, 2, 3], message="hi", notification_type="t", parse_mode=None
        )
    broadcast.start_progress(dead_redis, created, time.time())
    with db_engine.begin() as conn:
        conn.execute(sa.text("UPDATE notification_queue SET status = 'sent'"))
    # When every row is sent: the refresh skips the progress and does not settle the broadcast
    assert broadcast.refresh_progress(runtime.database, dead_redis, ["bc-1"]) == []
    assert broadcast.unsettled(runtime.database) == ["bc-1"]
    # Then the first refresh with Redis back writes the whole report and settles it
    [report] = broadcast.refresh_progress(
        runtime.database, redis_client, broadcast.unsettled(runtime.database)
    )
    assert (report["total"], report["sent"], report["failed"]) == (3, 3, 0)
    progress = broadcast.read_progress(redis_client, "bc-1")
    assert (progress["status"], progress["total"], progress["sent"]) == ("settled", "3", "3")
    assert broadcast.unsettled(runtime.database) == []


def test_a_drain_tick_with_redis_unreachable_sends_every_row_at_the_local_rate(
    make_runtime: MakeRuntime,
    stub_broker: StubBroker,
    stub_worker: dramatiq.Worker,
    sandbox: RunningSandbox,
    db_engine: sa.Engine,
) -> None:
    # Given the process's Redis refuses connections, with limits of 30/s and 1/s per chat
    make_runtime(
        REDIS_URL=unreachable_redis_url(), TELEGRAM_GLOBAL_RATE_PER_S="30", TELEGRAM_PER_CHAT_RATE_PER_S="1"
    )
    insert_rows(db_engine, list(range(4000, 4010)))
    # When the scheduler's tick runs the drain actor
    process_notification_queue.send()
    stub_broker.join("notifications", fail_fast=False)
    stub_worker.join()
    # Then every row is sent — no slot, rate-limit or progress error failed the drain — at the
    # local fallback rate of 5/s
    assert [r["status"] for r in rows(db_engine)] == ["sent"] * 10
    with db_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM dead_letters")).scalar_one() == 0
    arrivals = sorted(float(e["arrived_at"]) for e in sandbox.state.received())
    assert min(b - a for a, b in itertools.pairwise(arrivals)) > 0.15
