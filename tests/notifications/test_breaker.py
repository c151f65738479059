"""Tier 1: the Telegram circuit breaker — its states on a fake clock, then senders and drains opening
it against the sandbox over HTTP (connections dropped, refused, or left hanging)."""

from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import sqlalchemy as sa

from actors.notifications.queue import DrainConfig, QueueDrainer, drainer
from sandbox.server import RunningSandbox
from tests.fixtures.notifications import MakeRuntime, insert_rows, rows
from tests.fixtures.ports import free_port
from tests.fixtures.worker import wait_for
from worker_app.clients.breaker import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    PROBE_WAIT_S,
    BreakerConfig,
    CircuitBreaker,
)
from worker_app.clients.telegram import TelegramClient
from worker_app.config import load_settings
from worker_app.errors import ConfigurationError
from worker_app.runtime import Runtime
from worker_app.telegram import metrics
from worker_app.telegram.ratelimit import DEFAULT_FALLBACK_RATE_PER_S
from worker_app.telegram.sender import DEFERRED, RETRY, SENT, TelegramSender, build_sender, telegram_breaker


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def open_breaker(breaker: CircuitBreaker) -> None:
    for _ in range(breaker.config.failures):
        breaker.record_failure("test: Telegram is down")
    assert breaker.state == OPEN


def sender_with(
    runtime: Runtime, breaker: CircuitBreaker, client: TelegramClient | None = None
) -> TelegramSender:
    return TelegramSender(client or runtime.telegram, runtime.telegram_sender.limiter, breaker=breaker)


def failed_probes(caplog: pytest.LogCaptureFixture) -> int:
    return sum("still unavailable after a probe" in r.getMessage() for r in caplog.records)


def dropped(sandbox: RunningSandbox) -> int:
    return int(sandbox.state.stats()["by_status"].get("dropped", 0))


# --- the state machine -------------------------------------------------------------------------


def test_consecutive_failures_open_it_and_while_open_no_send_is_allowed() -> None:
    clock = Clock()
    breaker = telegram_breaker(BreakerConfig(failures=3, cooldown_s=5), clock=clock)
    assert [breaker.record_failure("502") for _ in range(3)] == [False, False, True]
    assert breaker.state == OPEN and not breaker.allow()
    assert breaker.blocked_for() == 5.0
    clock.advance(4)
    assert breaker.blocked_for() == pytest.approx(1.0) and not breaker.allow()


def test_sparse_failures_never_add_up_to_an_outage() -> None:
    # Given failures further apart than the window (one bad row per drain tick, say)
    clock = Clock()
    breaker = telegram_breaker(BreakerConfig(failures=3, window_s=10), clock=clock)
    for _ in range(5):
        assert not breaker.record_failure("502")
        clock.advance(11)
    assert breaker.state == CLOSED


def test_any_answer_from_telegram_resets_the_count() -> None:
    breaker = telegram_breaker(BreakerConfig(failures=3), clock=Clock())
    breaker.record_failure("502")
    breaker.record_failure("502")
    breaker.record_success()  # e.g. a 403 for a blocked chat: Telegram is up
    assert not breaker.record_failure("502") and not breaker.record_failure("502")
    assert breaker.state == CLOSED


def test_after_the_cooldown_exactly_one_probe_goes_and_its_success_closes_it() -> None:
    clock = Clock()
    breaker = telegram_breaker(BreakerConfig(failures=1, cooldown_s=5), clock=clock)
    open_breaker(breaker)
    clock.advance(5)
    assert breaker.blocked_for() == 0  # a probe may go
    assert breaker.allow() and breaker.state == HALF_OPEN
    # every other sender waits for the probe's answer
    assert not breaker.allow() and breaker.blocked_for() == PROBE_WAIT_S
    breaker.record_success()
    assert breaker.state == CLOSED and breaker.allow() and breaker.blocked_for() == 0


def test_when_the_cooldown_ends_it_turns_half_open_by_itself() -> None:
    """So that its metric does not say "open" forever in a process with nothing more to send."""
    breaker = telegram_breaker(BreakerConfig(failures=1, cooldown_s=0.2))
    open_breaker(breaker)
    wait_for(lambda: breaker.state == HALF_OPEN, 5, "the cooldown to end")
    assert breaker.allow() and not breaker.allow()


def test_a_failed_probe_reopens_it_with_a_doubled_cooldown_up_to_the_cap() -> None:
    clock = Clock()
    breaker = telegram_breaker(BreakerConfig(failures=1, cooldown_s=5, max_cooldown_s=30), clock=clock)
    open_breaker(breaker)
    cooldowns = [breaker.blocked_for()]
    for _ in range(4):
        clock.advance(cooldowns[-1])
        assert breaker.allow()
        assert breaker.record_failure("connection refused")
        cooldowns.append(breaker.blocked_for())
    assert cooldowns == [5, 10, 20, 30, 30]
    # and once Telegram is back, the next outage starts from the short cooldown again
    clock.advance(30)
    assert breaker.allow()
    breaker.record_success()
    open_breaker(breaker)
    assert breaker.blocked_for() == 5


def test_a_probe_that_never_answers_is_replaced_after_a_cooldown() -> None:
    clock = Clock()
    breaker = telegram_breaker(BreakerConfig(failures=1, cooldown_s=5), clock=clock)
    open_breaker(breaker)
    clock.advance(5)
    assert breaker.allow()  # this probe's thread dies without a word
    clock.advance(4.9)
    assert not breaker.allow()
    clock.advance(0.2)
    assert breaker.allow()


def test_a_failure_of_a_send_already_in_flight_is_held_back_without_extending_the_cooldown() -> None:
    clock = Clock()
    breaker = telegram_breaker(BreakerConfig(failures=1, cooldown_s=5), clock=clock)
    open_breaker(breaker)
    clock.advance(2)
    assert breaker.record_failure("read timeout")
    assert breaker.blocked_for() == pytest.approx(3.0)


def test_an_outage_logs_one_warning_one_info_per_probe_and_one_info_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    breaker = telegram_breaker(BreakerConfig(failures=3, cooldown_s=5), clock=clock)
    opens = metrics.breaker_opens()
    with caplog.at_level(logging.INFO, logger="worker_app.clients.breaker"):
        for _ in range(20):  # a whole batch failing, most of it while already open
            breaker.record_failure("HTTP 502")
        clock.advance(5)
        breaker.allow()
        breaker.record_failure("HTTP 502")
        clock.advance(10)
        breaker.allow()
        breaker.record_success()
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert [level for level, _ in lines] == ["WARNING", "INFO", "INFO"]
    assert "opened after 3 consecutive failures (last: HTTP 502)" in lines[0][1]
    assert "next probe in 10 s" in lines[1][1]
    assert "telegram circuit breaker closed: it answers again after 15.0 s" in lines[2][1]
    assert metrics.breaker_opens() == opens + 1


# --- senders against the sandbox ------------------------------------------------------------------


@pytest.mark.parametrize("outage", ["connections dropped", "connections refused"])
def test_a_dead_telegram_opens_the_breaker_and_later_sends_are_deferred_without_a_call(
    outage: str, runtime: Runtime, sandbox: RunningSandbox
) -> None:
    # Given Telegram is down
    if outage == "connections dropped":
        sandbox.state.set_faults(down=True)
        client = runtime.telegram
    else:
        client = TelegramClient(f"http://127.0.0.1:{free_port()}", os.environ["TELEGRAM_BOT_TOKEN"])
    sender = sender_with(runtime, telegram_breaker(), client)
    # When eight messages are sent one after another
    deliveries = [sender.send(900 + i, "hi", None, max_wait_s=1) for i in range(8)]
    # Then four fail as attempts, the fifth failure opens the breaker and is deferred like the rest
    assert [d.status for d in deliveries] == [RETRY] * 4 + [DEFERRED] * 4
    assert "circuit breaker open" in (deliveries[4].error or "")
    assert "last failure: telegram: POST" in (deliveries[4].error or "")
    assert all(4 < d.wait_s <= 5 and not d.rate_limited for d in deliveries[4:])
    if outage == "connections dropped":
        assert dropped(sandbox) == 5, "no call once the breaker is open"


def test_a_hanging_telegram_opens_the_breaker_within_5_seconds(
    runtime: Runtime, sandbox: RunningSandbox
) -> None:
    # Given Telegram accepts connections but stops answering
    sandbox.state.set_faults(latency_ms=60_000)
    breaker = telegram_breaker()
    sender = sender_with(runtime, breaker)
    started = time.monotonic()
    # When a drain's worth of sends goes out at once (NOTIFICATION_SEND_CONCURRENCY threads)
    with ThreadPoolExecutor(8) as pool:
        deliveries = list(pool.map(lambda chat: sender.send(chat, "hi", None, max_wait_s=1), range(8)))
    opened_after_s = time.monotonic() - started
    sandbox.state.set_faults(latency_ms=0)
    # Then the send timeout turned the hang into failures fast enough: open within the spec's 5 s
    assert breaker.state == OPEN
    assert opened_after_s < 5.0, f"the breaker opened {opened_after_s:.1f} s into the outage"
    assert sorted(d.status for d in deliveries) == [DEFERRED] * 4 + [RETRY] * 4


def test_when_telegram_returns_a_probe_closes_the_breaker(runtime: Runtime, sandbox: RunningSandbox) -> None:
    clock = Clock()
    breaker = telegram_breaker(BreakerConfig(failures=2, cooldown_s=5), clock=clock)
    sender = sender_with(runtime, breaker)
    sandbox.state.set_faults(down=True)
    assert [sender.send(1, "a", None, max_wait_s=1).status for _ in range(2)] == [RETRY, DEFERRED]
    # the first probe fails: Telegram is still down
    clock.advance(5)
    assert sender.send(1, "b", None, max_wait_s=1).status == DEFERRED
    assert dropped(sandbox) == 3 and breaker.blocked_for() == 10
    # Telegram is back, but no send is tried before the (doubled) cooldown is over
    sandbox.state.set_faults(down=False)
    assert sender.send(1, "c", None, max_wait_s=1).status == DEFERRED
    assert sandbox.state.stats()["by_status"].get("200") is None
    clock.advance(10)
    assert sender.send(1, "d", None, max_wait_s=1).status == SENT
    assert breaker.state == CLOSED
    assert [e["text"] for e in sandbox.state.received()] == ["d"]


# --- drains ---------------------------------------------------------------------------------------


def test_a_drain_into_a_dead_telegram_stops_after_one_batch_without_burning_attempts(
    make_runtime: MakeRuntime, sandbox: RunningSandbox, db_engine: sa.Engine
) -> None:
    # Given 200 due rows and a dead Telegram
    runtime = make_runtime(NOTIFICATION_DRAIN_BUDGET_S="2")
    insert_rows(db_engine, list(range(2000, 2200)))
    sandbox.state.set_faults(down=True)
    # When the queue is drained
    report = runtime.service(drainer).drain()
    # Then the breaker stopped it after one batch instead of walking every row into the outage
    assert report.stopped == "breaker" and report.batches == 1
    assert dropped(sandbox) <= 4 + 8, "calls: the failures that opened it, plus sends in flight"
    # And only the failures before it opened cost an attempt; every row is still pending
    states = [(r["status"], r["attempts"]) for r in rows(db_engine)]
    assert {status for status, _ in states} == {"pending"}
    assert sum(attempts for _, attempts in states) <= 4 and max(a for _, a in states) == 1


def test_after_an_outage_the_drain_probes_and_then_sends_every_deferred_row(
    runtime: Runtime, sandbox: RunningSandbox, db_engine: sa.Engine, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a drain with a quick breaker (2 failures, 0.5 s cooldown) and a dead Telegram
    breaker = telegram_breaker(BreakerConfig(failures=2, cooldown_s=0.5, max_cooldown_s=1))
    insert_rows(db_engine, list(range(3000, 3100)))
    sandbox.state.set_faults(down=True)
    reports = []
    with ThreadPoolExecutor(8) as pool:
        drainer = QueueDrainer(
            runtime.database, sender_with(runtime, breaker), pool, DrainConfig(budget_s=30)
        )
        drain = threading.Thread(target=lambda: reports.append(drainer.drain()))
        drain.start()
        # When Telegram comes back after a few failed probes
        with caplog.at_level(logging.INFO, logger="worker_app.clients.breaker"):
            wait_for(lambda: failed_probes(caplog) >= 2, 10, "the breaker to open and fail two probes")
        sandbox.state.set_faults(down=False)
        calls_while_down = dropped(sandbox)
        drain.join(timeout=30)
    # Then the drain, which waited rather than deferring row after row, sent everything it deferred
    assert reports and reports[0].stopped == "empty" and breaker.state == CLOSED
    by_status = sorted((r["status"], r["attempts"]) for r in rows(db_engine))
    assert by_status.count(("sent", 0)) >= 99
    assert by_status.count(("pending", 1)) <= 1, "one failure before the breaker opened: 30 s backoff"
    assert calls_while_down <= 2 + 7 + 3, "the failures that opened it, sends in flight, then probes"


# --- settings -------------------------------------------------------------------------------------


def test_the_breaker_and_the_fallback_rate_follow_their_settings(redis_client: Any) -> None:
    settings = load_settings({
        "TELEGRAM_BREAKER_FAILURES": "7", "TELEGRAM_BREAKER_WINDOW_S": "2",
        "TELEGRAM_BREAKER_COOLDOWN_S": "1", "TELEGRAM_BREAKER_MAX_COOLDOWN_S": "8",
        "TELEGRAM_FALLBACK_RATE_PER_S": "2", "TELEGRAM_GLOBAL_RATE_PER_S": "30",
    })  # fmt: skip
    sender = build_sender(settings, redis_client, TelegramClient("http://127.0.0.1:1", "1:x"))
    assert sender.breaker.config == BreakerConfig(failures=7, window_s=2, cooldown_s=1, max_cooldown_s=8)
    assert sender.limiter.local.global_per_s == 2


def test_the_defaults_of_the_settings_are_the_modules_defaults() -> None:
    """A runtime that builds the sender without the settings behaves as documented."""
    settings = load_settings({})
    assert BreakerConfig() == BreakerConfig(
        failures=settings.telegram_breaker_failures,
        window_s=settings.telegram_breaker_window_s,
        cooldown_s=settings.telegram_breaker_cooldown_s,
        max_cooldown_s=settings.telegram_breaker_max_cooldown_s,
    )
    assert settings.telegram_fallback_rate_per_s == DEFAULT_FALLBACK_RATE_PER_S
    assert TelegramClient("http://x", "1:x").send_timeout_s == settings.telegram_send_timeout_s


def test_a_max_cooldown_below_the_cooldown_is_refused_at_start_up() -> None:
    with pytest.raises(ConfigurationError, match="TELEGRAM_BREAKER_MAX_COOLDOWN_S"):
        load_settings({"TELEGRAM_BREAKER_COOLDOWN_S": "10", "TELEGRAM_BREAKER_MAX_COOLDOWN_S": "5"})
