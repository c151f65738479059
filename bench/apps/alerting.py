"""The alert-storm benchmark's app: the product's broker and middleware, a no-op actor whose
throughput is measured, and a buggy actor whose every message dies (an alert storm)."""

from __future__ import annotations

import itertools

import dramatiq

import worker_app  # noqa: F401  (sets the product's broker before the actors below are declared)
from bench.apps.common import record_completion
from worker_app.policies import Alert, RetryPolicy

QUEUE, STORM_QUEUE = "bench", "bench_storm"


@dramatiq.actor(queue_name=QUEUE, actor_name="bench_noop")
def noop() -> None:
    """Does nothing but count its completion."""
    record_completion()


@dramatiq.actor(queue_name=STORM_QUEUE, retry_policy=RetryPolicy(0, when_exhausted=Alert("warning")))
def bench_bug(n: int) -> None:
    """A bug (KeyError) in every message: a first-occurrence alert, then dead with an alert."""
    plans: dict[str, int] = {}
    plans[f"user {n}"] += 1


def send(good: int, bad: int) -> None:
    """``good`` no-op messages with ``bad`` buggy ones spread evenly among them."""
    every = max(1, good // bad) if bad else 0
    sent_bad = 0
    for n in itertools.count():
        if n >= good and sent_bad >= bad:
            break
        if n < good:
            noop.send()
        if every and n % every == 0 and sent_bad < bad:
            bench_bug.send(sent_bad)
            sent_bad += 1
    dramatiq.get_broker().close()
