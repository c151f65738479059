"""Actors used only by the tier-3 tests; the worker under test loads them with
``dramatiq worker_app tests.e2e_actors``. They sit on real domain queues, so they run under those
domains' retry policies."""

from __future__ import annotations

import dramatiq

from worker_app.errors import PermanentError, UpstreamUnavailable
from worker_app.policies import SECOND_MS, RetryPolicy
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
