"""Queue depths over time (worker_app.queue_history) and the job that samples them, on the real Redis
and RabbitMQ."""

from __future__ import annotations

import time
from typing import Any

import redis

import worker_app
from tests.fixtures.notifications import MakeRuntime
from tests.fixtures.scheduler import ready_count
from worker_app import queue_history
from worker_app.queues import QueueDepth, QueueReport


def depth(queue: str, ready: int, delayed: int = 0, dead: int = 0) -> QueueDepth:
    return QueueDepth(queue, ready, None, delayed, dead, 1, None, None)


def test_a_sample_sums_shards_under_their_domain_expires_and_gaps_stay_empty(
    redis_client: redis.Redis,
) -> None:
    # Given a report with two payments queues' worth of messages and two bot_updates shards
    report = QueueReport("amqp", None, [depth("payments", 3, delayed=2, dead=1), depth("bot_updates.00", 4),
                                        depth("bot_updates.07", 5, dead=2)])  # fmt: skip
    minute = int(time.time() // 60)

    # When it is recorded as this minute's sample
    assert queue_history.record(redis_client, report, minute * 60 + 30) == 2

    # Then this minute has each domain's depths, the minute before has no sample, and it expires
    before, now = queue_history.history(redis_client, [minute - 1, minute])
    assert before.depths == {} and before.total("ready") is None
    assert now.depths == {"payments": {"ready": 3, "delayed": 2, "dead": 1},
                          "bot_updates": {"ready": 9, "delayed": 0, "dead": 2}}  # fmt: skip
    assert (now.total("ready"), now.total("dead")) == (12, 3)
    ttl = redis_client.ttl(f"cybervpn:queue_depths:{minute}")
    assert queue_history.KEEP_S - 10 < ttl <= queue_history.KEEP_S


def test_the_job_samples_every_domain_queue_from_rabbitmq(
    make_runtime: MakeRuntime, rabbitmq_vhost: str, redis_client: redis.Redis
) -> None:
    from actors.monitoring import sample_queue_depths

    make_runtime()
    worker_app.broker.declare_queue("sync", ensure=True)
    summary: dict[str, Any] = sample_queue_depths()
    assert summary["job"] == "sample_queue_depths" and summary["queues"] >= 9
    [sample] = queue_history.history(redis_client, [int(time.time() // 60)])
    assert {"notifications", "payments", "sync", "bot_updates"} <= set(sample.depths)
    assert not any("." in queue for queue in sample.depths), "shards are summed under their domain"
    assert sample.depths["sync"]["ready"] == ready_count("sync")


def test_until_this_minute_is_sampled_the_charted_hour_ends_at_the_minute_before(
    redis_client: redis.Redis,
) -> None:
    from worker_app.web.telemetry import depth_charts

    minute = int(time.time() // 60)
    queue_history.record(redis_client, QueueReport("amqp", None, [depth("sync", 7)]), minute * 60)
    for now in (minute * 60 + 59, (minute + 1) * 60 + 5):  # later in that minute; early in the next
        charts = depth_charts(redis_client, now)
        assert charts["sampled"] and "ready (now 7)" in str(charts["chart"])
        assert "(latest 7)" in str(charts["sparklines"]["sync"])
