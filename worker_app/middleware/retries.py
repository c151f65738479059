"""Retries driven by the per-domain policy table; permanent errors are never retried.

Replaces Dramatiq's ``Retries`` (20 retries up to 7 days by default — dangerous on RabbitMQ).
A message that will not be retried is failed, so the consumer nacks it into ``<queue>.XQ`` and
the dead-letter middleware records it. A retry that cannot be enqueued (RabbitMQ down) is also
failed, never acked: the message is recorded dead instead of lost. A job cancelled by an operator
(:class:`~worker_app.errors.JobCancelled`) is acked: neither retried nor dead.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import dramatiq
from dramatiq.errors import Retry

from worker_app import ordered, outcome
from worker_app.errors import BadMessage, JobCancelled, PermanentError, RateLimited
from worker_app.policies import MAX_RATE_LIMITED_RETRIES, RetryPolicy, policy_for

log = logging.getLogger(__name__)


def is_permanent(exception: BaseException, actor_options: Mapping[str, Any]) -> bool:
    """Retrying cannot help: a :class:`PermanentError` or one of the actor's ``throws``."""
    throws = actor_options.get("throws")
    return isinstance(exception, PermanentError) or bool(throws and isinstance(exception, throws))


class PolicyRetries(dramatiq.Middleware):
    """Retry per ``policies.POLICIES``, honour ``retry_after``, dead-letter the rest."""

    @property
    def actor_options(self) -> set[str]:
        return {"retry_policy", "throws", "when_exhausted"}

    def after_process_message(
        self, broker: dramatiq.Broker, message: Any, *, result: Any = None, exception: Any = None
    ) -> None:
        if exception is None:
            outcome.set_outcome(outcome.SKIPPED if message.failed else outcome.SUCCESS)
            return
        if isinstance(exception, JobCancelled):  # stopped on purpose: acked, never retried nor dead
            outcome.set_outcome(outcome.SKIPPED)
            return
        now_ms = int(time.time() * 1000)
        message.options.setdefault("first_failed_at", now_ms)
        message.options["last_failed_at"] = now_ms
        actor = broker.actors.get(message.actor_name)
        actor_options: dict[str, Any] = actor.options if actor else {}
        if is_permanent(exception, actor_options):
            self._fail(message, "bad_message" if isinstance(exception, BadMessage) else "permanent_error")
            return
        if message.options.get("foreground") or ordered.shard_domain(message.queue_name) is not None:
            # `worker-app run --once`: one attempt, in the foreground, no retry. An ordered queue's actor
            # retries in place: a retry through the delay queue would let the key's later messages
            # overtake this one (worker_app.ordered)
            self._fail(message, "retries_exhausted")
            return
        if (
            isinstance(exception, RateLimited)
            and message.options.get("rate_limited", 0) < MAX_RATE_LIMITED_RETRIES
        ):
            message.options["rate_limited"] = message.options.get("rate_limited", 0) + 1
            self._retry(broker, message, int(exception.retry_after_s * 1000))
            return
        policy: RetryPolicy = actor_options.get("retry_policy") or policy_for(message.queue_name)
        retries = message.options.get("retries", 0)
        if retries >= policy.max_retries:
            self._fail(message, "retries_exhausted")
            return
        message.options["retries"] = retries + 1
        delay_ms = exception.delay if isinstance(exception, Retry) and exception.delay else None
        self._retry(broker, message, delay_ms if delay_ms is not None else policy.delay_ms(retries + 1))

    @staticmethod
    def _fail(message: Any, reason: str) -> None:
        message.options.setdefault("dead_reason", reason)
        message.fail()
        outcome.set_outcome(outcome.DEAD)

    def _retry(self, broker: dramatiq.Broker, message: Any, delay_ms: int) -> None:
        try:
            broker.enqueue(message, delay=delay_ms if delay_ms > 0 else None)
        except dramatiq.errors.ConnectionError:
            log.critical("could not enqueue the retry of %s; recording it dead instead", message.message_id)
            self._fail(message, "retry_enqueue_failed")
            return
        outcome.set_outcome(outcome.RETRY)
