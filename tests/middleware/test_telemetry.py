"""Telemetry: the in-process counts, their flush to the real Redis and the readers (tier 1), then the
middleware in the real stack on the StubBroker with a real Worker (tier 2)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import dramatiq
import pytest
import redis
import sqlalchemy as sa

from tests.fixtures.notifications import unreachable_redis_url
from tests.fixtures.stub import DelayCapturingStubBroker, run_until_idle
from worker_app import telemetry
from worker_app.errors import JobCancelled, PermanentError, UpstreamUnavailable
from worker_app.middleware.event_log import EventLog
from worker_app.middleware.telemetry import Aggregator, Telemetry
from worker_app.policies import RetryPolicy
from worker_app.runtime import get_runtime
from worker_app.telemetry import Counts, duration_bucket, hour_key, minute_key

NOW = 1_900_000_000.0  # tier 1's clock (in 2030: no key expires during a test), 46 min into its hour
MINUTE = int(NOW // 60)


def count(agg: Aggregator, minute: int, actor: str, kind: str, duration_ms: float | None = None) -> None:
    """One attempt of ``actor`` that began and ended as ``kind`` in ``minute``."""
    agg.started((minute, actor))
    agg.ended((minute, actor), kind, None if duration_ms is None else duration_bucket(duration_ms))


def test_a_flush_adds_the_counts_to_their_minute_and_hour_buckets_with_their_expiry(
    redis_client: redis.Redis,
) -> None:
    # Given an attempt that completed and one that will be retried, counted this minute
    agg = Aggregator(redis_client)
    count(agg, MINUTE, "sync_users", "completed", 12.0)
    count(agg, MINUTE, "sync_users", "retried", 12.0)

    # When the aggregator is flushed
    assert agg.flush()

    # Then the minute and the hour bucket hold the same fields, each expiring after its bucket ends
    fields = {"sync_users|started": "2", "sync_users|completed": "1", "sync_users|retried": "1",
              f"sync_users|h{duration_bucket(12.0)}": "2"}  # fmt: skip
    assert redis_client.hgetall(minute_key(MINUTE)) == fields
    assert redis_client.hgetall(hour_key(MINUTE // 60)) == fields
    hour = MINUTE // 60
    assert redis_client.expiretime(minute_key(MINUTE)) == (MINUTE + 1) * 60 + telemetry.MINUTE_KEEP_S
    assert redis_client.expiretime(hour_key(hour)) == (hour + 1) * 3600 + telemetry.HOUR_KEEP_S
    # and a second flush adds nothing more
    assert agg.flush()
    assert redis_client.hget(minute_key(MINUTE), "sync_users|started") == "2"


def test_each_window_reads_its_own_buckets(redis_client: redis.Redis) -> None:
    # Given completions now, 10 minutes ago, 23 hours ago and 25 hours ago (as flushed at the time)
    agg = Aggregator(redis_client)
    for minutes_ago in (0, 10, 23 * 60, 25 * 60):
        count(agg, MINUTE - minutes_ago, "a", "completed", 5.0)
    assert agg.flush()

    # When the summary is read
    found = telemetry.summary(redis_client, now=NOW)

    # Then 5m has the newest, 1h also the one 10 minutes old, 24h also the one of 23 h ago (its hour
    # bucket is among the last 24) but never the one of 25 h ago
    assert [found[w].actors["a"].completed for w in ("5m", "1h", "24h")] == [1, 2, 3]
    assert found["5m"].since == (MINUTE - 4) * 60
    assert found["24h"].since == (MINUTE // 60 - 23) * 3600
    assert found["24h"].totals.started == 3


def test_percentiles_come_from_the_histogram_within_one_bucket(redis_client: redis.Redis) -> None:
    # Given 90 attempts of 10 ms and 10 of 1,000 ms, counted by two processes
    first, second = Aggregator(redis_client), Aggregator(redis_client)
    for i in range(90):
        count(first if i % 2 else second, MINUTE, "a", "completed", 10.0)
    for _ in range(10):
        count(first, MINUTE, "a", "failed", 1000.0)
    assert first.flush() and second.flush()

    # When the summary is read
    a = telemetry.summary(redis_client, ("5m",), now=NOW)["5m"].actors["a"]

    # Then p50 is within 10 ms's bucket and p95 within 1,000 ms's (each ~19 % wide)
    assert (a.completed, a.failed, a.started) == (90, 10, 100)
    assert 10.0 / 1.19 <= (a.percentile_ms(0.5) or 0) <= 10.0 * 1.19
    assert 1000.0 / 1.19 <= (a.percentile_ms(0.95) or 0) <= 1000.0 * 1.19
    assert Counts().percentile_ms(0.5) is None


def test_series_has_one_point_per_minute_or_per_hour(redis_client: redis.Redis) -> None:
    # Given a retry 3 minutes ago and a completion now
    agg = Aggregator(redis_client)
    count(agg, MINUTE - 3, "a", "retried", 1.0)
    count(agg, MINUTE, "b", "completed", 1.0)
    assert agg.flush()

    # When the series of the last hour and of the last 24 h are read
    hour = telemetry.series(redis_client, "1h", now=NOW)
    day = telemetry.series(redis_client, "24h", now=NOW)

    # Then the hour has 60 minute points, the counts in theirs; the day 24 hour points
    assert len(hour) == 60 and {p.step_s for p in hour} == {60}
    assert hour[-1].start == MINUTE * 60 and hour[-1].totals().completed == 1
    assert hour[-4].actors["a"].retried == 1
    assert sum(p.totals().events() for p in hour) == 4
    assert len(day) == 24 and day[-1].step_s == 3600
    assert day[-1].totals().started == 2  # NOW is 46 minutes into its hour


def test_while_redis_is_down_the_counts_wait_for_the_next_flush(redis_client: redis.Redis) -> None:
    # Given counts that a flush cannot write (Redis refuses connections)
    down = redis.Redis.from_url(unreachable_redis_url(), socket_connect_timeout=1)
    agg = Aggregator(down)
    count(agg, MINUTE, "a", "completed", 1.0)
    assert not agg.flush()
    count(agg, MINUTE, "a", "completed", 1.0)

    # When Redis is back
    agg.redis = redis_client
    assert agg.flush()

    # Then every count is written, once
    assert redis_client.hget(minute_key(MINUTE), "a|completed") == "2"
    assert redis_client.hget(minute_key(MINUTE), "a|started") == "2"
    assert agg.dropped_events == 0


def test_the_counts_kept_in_memory_are_bounded_dropping_the_oldest_minutes(redis_client: redis.Redis) -> None:
    # Given five minutes of counts while Redis is down, and room for three
    agg = Aggregator(redis.Redis.from_url(unreachable_redis_url()), max_pending_minutes=3)
    for minutes_ago in range(5):
        count(agg, MINUTE - minutes_ago, "a", "completed")

    # When the flush fails
    assert not agg.flush()

    # Then the two oldest minutes are dropped and counted (2 events each), the rest written later
    assert agg.dropped_events == 4
    agg.redis = redis_client
    assert agg.flush()
    written = [redis_client.hget(minute_key(MINUTE - m), "a|completed") for m in range(5)]
    assert written == ["1", "1", "1", None, None]


def test_threads_counting_while_flushes_run_lose_nothing(redis_client: redis.Redis) -> None:
    # Given four threads each counting 5,000 completed attempts of one actor in the same minute
    agg = Aggregator(redis_client)

    def work() -> None:
        for _ in range(5000):
            count(agg, MINUTE, "a", "completed", 3.0)

    threads = [threading.Thread(target=work) for _ in range(4)]

    # When the aggregator is flushed over and over while they count, and once after
    for thread in threads:
        thread.start()
    while any(t.is_alive() for t in threads):
        assert agg.flush()
    for thread in threads:
        thread.join()
    assert agg.flush()

    # Then Redis has every one of them, exactly once
    fields = redis_client.hgetall(minute_key(MINUTE))
    histogram = f"a|h{duration_bucket(3.0)}"
    assert (fields["a|started"], fields["a|completed"], fields[histogram]) == ("20000", "20000", "20000")


# Tier 2: the middleware in the real stack


@pytest.fixture
def stack_telemetry(capturing_broker: DelayCapturingStubBroker) -> Iterator[Telemetry]:
    """The stack's Telemetry (bootstrap places it right after EventLog), inserted there if the stack
    has none."""
    middleware = capturing_broker.middleware
    found = [m for m in middleware if isinstance(m, Telemetry)]
    if found:
        yield found[0]
        return
    added = Telemetry(get_runtime().redis)
    middleware.insert(next(i for i, m in enumerate(middleware) if isinstance(m, EventLog)) + 1, added)
    yield added
    middleware.remove(added)


def run_with_retries(broker: DelayCapturingStubBroker, queue: str) -> None:
    """Run ``queue`` until nothing is left, releasing each held retry at once instead of after its delay."""
    while True:
        run_until_idle(broker, queue)
        if not broker.held:
            return
        while broker.held:
            broker.enqueue(broker.held.pop()[0])


def actors_of(client: redis.Redis, window: str = "5m") -> dict[str, Counts]:
    return telemetry.summary(client, (window,))[window].actors


def test_success_retry_and_final_failure_are_told_apart_per_actor(
    capturing_broker: DelayCapturingStubBroker, stack_telemetry: Telemetry, clean_tables: sa.Engine,
    redis_client: redis.Redis,
) -> None:  # fmt: skip
    # Given actors that succeed (18 quick, 2 slow), fail once then succeed, fail until their one
    # retry is used up, and fail permanently
    b, tries = capturing_broker, {"flaky": 0}
    one_retry = RetryPolicy(1, (60_000,))

    @dramatiq.actor(queue_name="sync", broker=b, actor_name="tele_steady")
    def steady(ms: int) -> None:
        time.sleep(ms / 1000)

    @dramatiq.actor(queue_name="sync", broker=b, actor_name="tele_flaky", retry_policy=one_retry)
    def flaky() -> None:
        tries["flaky"] += 1
        if tries["flaky"] == 1:
            raise UpstreamUnavailable("panel answered 502")

    @dramatiq.actor(queue_name="sync", broker=b, actor_name="tele_doomed", retry_policy=one_retry)
    def doomed() -> None:
        raise UpstreamUnavailable("panel answered 502")

    @dramatiq.actor(queue_name="sync", broker=b, actor_name="tele_refused")
    def refused() -> None:
        raise PermanentError("nobody owns it")

    # When they run on a real worker, each retry released at once
    for ms in [5] * 18 + [300] * 2:
        steady.send(ms)
    for actor in (flaky, doomed, refused):
        actor.send()
    run_with_retries(b, "sync")
    stack_telemetry.flush()

    # Then each actor's attempts are counted by how they ended
    found = actors_of(redis_client)
    counted = {a: (c.started, c.completed, c.retried, c.failed) for a, c in found.items()}
    assert counted == {
        "tele_steady": (20, 20, 0, 0),
        "tele_flaky": (2, 1, 1, 0),
        "tele_doomed": (2, 0, 1, 1),
        "tele_refused": (1, 0, 0, 1),
    }
    # and the durations of the steady actor: p50 a quick one, p95 a slow one
    p50, p95 = found["tele_steady"].percentile_ms(0.5), found["tele_steady"].percentile_ms(0.95)
    assert p50 is not None and 5 / 1.19 <= p50 < 200, p50
    assert p95 is not None and 300 / 1.19 <= p95 < 3000, p95
    assert sum(found["tele_doomed"].durations.values()) == 2
    # and each attempt's time in the queue; and the last error of each actor that raised
    assert sum(found["tele_steady"].waits.values()) == 20
    errors = telemetry.last_errors(redis_client)
    assert set(errors) == {"tele_flaky", "tele_doomed", "tele_refused"}
    assert errors["tele_refused"][1] == "PermanentError: nobody owns it"
    assert errors["tele_doomed"][1].startswith("UpstreamUnavailable: panel answered 502")
    assert abs(errors["tele_doomed"][0] - time.time()) < 600


def test_the_wait_runs_from_the_enqueue_or_from_the_eta_of_a_delayed_message(
    capturing_broker: DelayCapturingStubBroker, stack_telemetry: Telemetry, clean_tables: sa.Engine,
    redis_client: redis.Redis,
) -> None:  # fmt: skip
    b = capturing_broker

    @dramatiq.actor(queue_name="sync", broker=b, actor_name="tele_waited")
    def waited() -> None:
        pass

    @dramatiq.actor(queue_name="sync", broker=b, actor_name="tele_delayed")
    def delayed() -> None:
        pass

    # Given a message enqueued 3 s ago, and one enqueued 10 min ago but due (eta) only 1 s ago
    now_ms = int(time.time() * 1000)
    b.enqueue(waited.message().copy(message_timestamp=now_ms - 3000))
    b.enqueue(delayed.message().copy(message_timestamp=now_ms - 600_000, options={"eta": now_ms - 1000}))

    # When they run
    run_until_idle(b, "sync")
    stack_telemetry.flush()

    # Then the first waited about 3 s; the second about 1 s (from its eta), not 10 minutes
    found = actors_of(redis_client)
    first, second = (found[a].percentile_ms(0.95, found[a].waits) for a in ("tele_waited", "tele_delayed"))
    assert first is not None and 3000 / 1.19 <= first < 60_000, first
    assert second is not None and 1000 / 1.19 <= second < 60_000, second
    assert found["tele_waited"].as_dict()["wait_p95_ms"] == first


def test_skipped_messages_are_not_started_and_rejected_ones_count_as_failed(
    capturing_broker: DelayCapturingStubBroker, stack_telemetry: Telemetry, clean_tables: sa.Engine,
    redis_client: redis.Redis,
) -> None:  # fmt: skip
    # Given a job an operator cancels while it runs, and a message whose arguments do not fit
    @dramatiq.actor(queue_name="sync", broker=capturing_broker, actor_name="tele_cancelled")
    def cancelled() -> None:
        raise JobCancelled("cancelled by ops")

    @dramatiq.actor(queue_name="sync", broker=capturing_broker, actor_name="tele_strict")
    def strict(user_id: int) -> None:
        pass

    # When they are processed
    cancelled.send()
    strict.send_with_options(args=(1, 2, 3))
    run_with_retries(capturing_broker, "sync")
    stack_telemetry.flush()

    # Then the cancelled one is not counted at all; the rejected one failed without starting
    found = actors_of(redis_client)
    assert "tele_cancelled" not in found
    strict_counts = found["tele_strict"]
    assert (strict_counts.started, strict_counts.failed, strict_counts.durations) == (0, 1, {})


def test_the_counts_reach_redis_when_the_worker_stops(
    capturing_broker: DelayCapturingStubBroker, stack_telemetry: Telemetry, clean_tables: sa.Engine,
    redis_client: redis.Redis,
) -> None:  # fmt: skip
    # Given an actor that succeeds
    @dramatiq.actor(queue_name="sync", broker=capturing_broker, actor_name="tele_quick")
    def quick() -> None:
        pass

    # When a worker processes 3 messages and stops (no flush asked for)
    for _ in range(3):
        quick.send()
    run_until_idle(capturing_broker, "sync")

    # Then its shutdown flushed them
    assert actors_of(redis_client, "1h")["tele_quick"].completed == 3


def test_a_message_survives_telemetry_whose_redis_is_down(
    capturing_broker: DelayCapturingStubBroker, clean_tables: sa.Engine, redis_client: redis.Redis
) -> None:
    # Given the stack's telemetry writing to a Redis that refuses connections
    middleware = capturing_broker.middleware
    for old in [m for m in middleware if isinstance(m, Telemetry)]:
        middleware.remove(old)
    down = Telemetry(redis.Redis.from_url(unreachable_redis_url()))
    middleware.insert(next(i for i, m in enumerate(middleware) if isinstance(m, EventLog)) + 1, down)
    done: list[Any] = []

    @dramatiq.actor(queue_name="sync", broker=capturing_broker, actor_name="tele_survivor")
    def survivor() -> None:
        done.append(1)

    # When a message runs and the worker stops (its flush fails)
    survivor.send()
    run_until_idle(capturing_broker, "sync")

    # Then the message succeeded, and its counts wait in memory for Redis
    assert done == [1] and not capturing_broker.dead_letters
    [(key, counts)] = down.aggregator.pending().items()
    assert key[1] == "tele_survivor" and (counts.started, counts.completed) == (1, 1)


def test_a_last_error_is_redacted_before_it_is_stored(redis_client: redis.Redis) -> None:
    # Given a failure whose message carries the bot token in a URL (as requests' errors do)
    agg = Aggregator(redis_client)
    error = "ConnectionError: HTTPSConnectionPool: /bot123456:AAE-SECRETtoken/sendMessage (timed out)"
    agg.failed_with("tele_redacted", time.time(), error)

    # When it is flushed
    assert agg.flush()

    # Then what Redis keeps (and the dashboard shows) has the token masked, the rest readable
    stored = telemetry.last_errors(redis_client)["tele_redacted"][1]
    assert "AAE-SECRET" not in stored and "123456" not in stored
    assert stored.startswith("ConnectionError: HTTPSConnectionPool: /bot") and "(timed out)" in stored
