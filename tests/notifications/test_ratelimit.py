"""Tier 1: the fleet-wide Telegram limits on real Redis, and a sender sending through them to the sandbox."""

from __future__ import annotations

import itertools
import threading
from typing import Any

from sandbox.server import RunningSandbox
from tests.fixtures.notifications import MakeRuntime
from worker_app.runtime import Runtime
from worker_app.telegram.ratelimit import PAUSE_KEY, TelegramRateLimiter
from worker_app.telegram.sender import DEFERRED, SENT


def test_slots_from_two_limiters_never_share_a_global_interval(redis_client: Any) -> None:
    # Given two limiters on the same Redis, as in two worker processes, at 20 sends/s
    limiters = [TelegramRateLimiter(redis_client, global_per_s=20, per_chat_per_s=0) for _ in range(2)]
    starts: list[float] = []
    lock = threading.Lock()

    def book(limiter: TelegramRateLimiter, chats: range) -> None:
        for chat in chats:
            slot = limiter.reserve(chat, max_wait_s=60)
            assert slot.booked
            with lock:
                starts.append(slot.wait_s + _redis_now_s(redis_client))

    # When both reserve 10 slots at once
    threads = [
        threading.Thread(target=book, args=(lim, range(i * 10, i * 10 + 10)))
        for i, lim in enumerate(limiters)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Then the 20 slots are 50 ms apart (within the clocks' rounding), never closer
    starts.sort()
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert len(starts) == 20
    assert min(gaps) > 0.035, gaps


def test_a_busy_chat_is_not_booked_and_leaves_the_global_schedule_alone(redis_client: Any) -> None:
    limiter = TelegramRateLimiter(redis_client, global_per_s=10, per_chat_per_s=1)
    first = limiter.reserve(42, max_wait_s=5)
    assert first.booked and first.wait_s == 0
    second = limiter.reserve(42, max_wait_s=5)
    # the chat's next slot is ~1 s away: not booked, wait returned
    assert not second.booked and 0.5 < second.wait_s <= 1.0
    # another chat is served right after the first send (0.1 s), not after the busy chat
    other = limiter.reserve(43, max_wait_s=5)
    assert other.booked and other.wait_s <= 0.1


def test_a_slot_beyond_the_acceptable_wait_is_not_booked(redis_client: Any) -> None:
    limiter = TelegramRateLimiter(redis_client, global_per_s=1, per_chat_per_s=0)
    assert limiter.reserve(1, max_wait_s=0).booked
    late = limiter.reserve(2, max_wait_s=0.5)
    assert not late.booked and late.wait_s > 0.5
    # and the refusal booked nothing: with patience the next slot is still ~1 s away
    assert 0.5 < limiter.reserve(3, max_wait_s=5).wait_s <= 1.0


def test_a_pause_delays_every_reservation_and_is_never_shortened(redis_client: Any) -> None:
    limiter = TelegramRateLimiter(redis_client, global_per_s=0, per_chat_per_s=0)
    limiter.pause(5)
    limiter.pause(1)
    assert 4 < limiter.paused_for() <= 5
    assert 4 < redis_client.pttl(PAUSE_KEY) / 1000 <= 5
    slot = limiter.reserve(7, max_wait_s=1)
    assert not slot.booked and slot.wait_s > 4


def test_a_429_pauses_the_whole_fleet_for_retry_after(runtime: Runtime, sandbox: RunningSandbox) -> None:
    # Given Telegram answers the next call with 429 retry_after=3
    sandbox.state.set_faults(rate_limit_count=1, rate_limit_retry_after=3)
    sender = runtime.telegram_sender
    first = sender.send(1, "hi", None, max_wait_s=0)
    assert first.status == DEFERRED and first.rate_limited and first.wait_s == 3
    # Then another sender (another process: same Redis) does not even try within the pause
    other = make_other_sender(runtime)
    second = other.send(2, "hi", None, max_wait_s=1)
    assert second.status == DEFERRED and not second.rate_limited
    assert sandbox.state.stats()["total"] == 1


def test_a_sender_waits_for_a_short_slot_and_sends(
    make_runtime: MakeRuntime, sandbox: RunningSandbox
) -> None:
    runtime = make_runtime(TELEGRAM_PER_CHAT_RATE_PER_S="4")
    sender = runtime.telegram_sender
    assert sender.send(5, "one", None, max_wait_s=1).status == SENT
    assert sender.send(5, "two", None, max_wait_s=1).status == SENT  # waited ~0.25 s for the chat
    assert [e["text"] for e in sandbox.state.received()] == ["one", "two"]
    gap = sandbox.state.received()[1]["received_at"] - sandbox.state.received()[0]["received_at"]
    assert gap > 0.2


def make_other_sender(runtime: Runtime) -> Any:
    from worker_app.telegram.sender import TelegramSender

    limiter = TelegramRateLimiter(runtime.redis, global_per_s=0, per_chat_per_s=0)
    return TelegramSender(runtime.telegram, limiter)


def _redis_now_s(client: Any) -> float:
    seconds, micros = client.time()
    return float(seconds) + micros / 1e6
