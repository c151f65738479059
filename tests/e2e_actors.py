"""Actors used only by the tier-3 tests; the worker under test loads them with
``dramatiq worker_app tests.e2e_actors``. They sit on real domain queues, so they run under those
domains' retry policies."""

from __future__ import annotations

import dramatiq

from worker_app.errors import PermanentError, UpstreamUnavailable
from worker_app.policies import DOMAINS, SECOND_MS, RetryPolicy
from worker_app.runtime import get_runtime


@dramatiq.actor(queue_name="payments")
def e2e_permanent(payment_id: int) -> None:
    """Fails permanently: must be dead after 0 retries."""
    raise PermanentError(f"invoice for payment {payment_id} was never created")


@dramatiq.actor(queue_name="analytics")
def e2e_transient(run_key: str) -> None:
    """Fails transiently and counts its attempts (analytics: 1 retry, no backoff)."""
    get_runtime().redis.incr(run_key)
    raise UpstreamUnavailable("panel answered 503")


@dramatiq.actor(queue_name="monitoring", retry_policy=RetryPolicy(1, (15 * SECOND_MS,)))
def e2e_delayed_retry(run_key: str) -> None:
    """Fails on its first run, succeeds on its retry 15 s later; counts its runs."""
    runs = get_runtime().redis.incr(run_key)
    if runs == 1:
        raise UpstreamUnavailable("first run fails on purpose")
    get_runtime().redis.set(f"{run_key}:done", runs)


@dramatiq.actor(queue_name="analytics")
def e2e_telegram_call() -> None:
    """Calls Telegram (unreachable in that test): its errors must never show the bot token."""
    get_runtime().telegram.get_me()


@dramatiq.actor(queue_name="payments")
def e2e_fails_until_fixed(run_key: str) -> None:
    """Fails permanently until ``<run_key>:fixed`` is set (the operator fixed the cause); then
    records the trace id and retry count it ran with."""
    from dramatiq.middleware import CurrentMessage

    client = get_runtime().redis
    if not client.exists(f"{run_key}:fixed"):
        raise PermanentError(f"cause of {run_key} not fixed yet")
    message = CurrentMessage.get_current_message()
    assert message is not None
    client.hset(f"{run_key}:done", mapping={
        "trace_id": message.options.get("trace_id", ""), "retries": message.options.get("retries", 0),
    })  # fmt: skip


@dramatiq.actor(queue_name="analytics")
def e2e_replay_count(run_key: str, n: int) -> None:
    """Counts how often item ``n`` ran (a replayed dead letter must run exactly once)."""
    get_runtime().redis.hincrby(run_key, str(n), 1)


@dramatiq.actor(queue_name="bulk")
def e2e_progress(total: int, outcome: str = "ok", pause_s: float = 0.0) -> dict[str, object]:
    """Reports progress over ``total`` items (``pause_s`` between steps of 10); ``outcome``: ok,
    failed (reports a failed result) or raise."""
    import time

    from worker_app.jobs import report_progress

    for done in [*range(0, total, 10), total]:
        report_progress(processed=done, total=total, failed=0)
        time.sleep(pause_s)
    if outcome == "raise":
        raise PermanentError("bulk operation refused")
    return {"status": "failed" if outcome == "failed" else "done", "processed": total}


@dramatiq.actor(queue_name="analytics")
def e2e_exit_process(run_key: str) -> None:
    """Kills its own worker process, as a segfault or the OOM killer would; counts its runs first."""
    import os

    get_runtime().redis.incr(run_key)
    os._exit(70)


@dramatiq.actor(queue_name="reports", time_limit=4_500)
def e2e_long_task(run_key: str, n: int, seconds: float) -> None:
    """Runs ``seconds`` (close to its 4.5 s time limit) and records each run of item ``n``: how many
    runs of it overlapped, and when it started and ended."""
    import json
    import os
    import time

    client = get_runtime().redis
    if client.hincrby(f"{run_key}:running", str(n), 1) > 1:  # another run of n is executing now
        client.hincrby(f"{run_key}:overlaps", str(n), 1)
    started = time.time()
    try:
        time.sleep(seconds)
    finally:
        client.hincrby(f"{run_key}:running", str(n), -1)
    client.rpush(f"{run_key}:runs", json.dumps([n, started, time.time(), os.getpid()]))


#: One quick retry: the exhaustion tests reach the end in a second, under the domain's own action.
QUICK_RETRY = RetryPolicy(1, (200,))


def _exhausting(queue: str) -> dramatiq.Actor[..., None]:
    def fail(run_key: str, telegram_id: int = 0, message: str = "") -> None:
        """Fails transiently every time on ``queue`` (``telegram_id``/``message``: what the
        notifications domain's deferral needs); counts its attempts."""
        get_runtime().redis.incr(run_key)
        raise UpstreamUnavailable(f"upstream answered 503 for {queue}")

    return dramatiq.actor(fail, queue_name=queue, actor_name=f"e2e_exhaust_{queue}", retry_policy=QUICK_RETRY)


#: ``e2e_exhaust_<domain>`` for every domain.
EXHAUSTING = {queue: _exhausting(queue) for queue in DOMAINS}


@dramatiq.actor(queue_name="payments", retry_policy=QUICK_RETRY)
def e2e_fails_once(run_key: str) -> None:
    """Fails on its first attempt, succeeds on its last (the retry)."""
    if get_runtime().redis.incr(run_key) == 1:
        raise UpstreamUnavailable("Crypto Pay answered 502")


@dramatiq.actor(queue_name="subscriptions", retry_policy=RetryPolicy(2, (1500,)))
def e2e_new_bug(run_key: str) -> None:
    """A bug (KeyError): alerted on its first failure, then dead after two retries 1.5 s apart."""
    get_runtime().redis.incr(run_key)
    plans: dict[str, int] = {}
    plans[f"plan of {run_key}"] += 1


@dramatiq.actor(queue_name="sync")
def e2e_sync_count(run_key: str, n: int) -> None:
    """Counts how often item ``n`` ran, on another queue than :func:`e2e_replay_count`."""
    get_runtime().redis.hincrby(run_key, str(n), 1)
