"""Guards that turn unusable messages into dead letters instead of endless failures.

* wrong arguments: checked against the actor's signature and type hints before it runs
  (:mod:`worker_app.arguments`) — a bad producer's message is dead as ``bad_message``, never retried;
* poison messages: a message that kills its worker process (OOM, segfault) comes back with its
  body unchanged, so Dramatiq's retry counter never grows. RabbitMQ marks it ``redelivered``;
  those deliveries are counted per message id in Redis and capped at ``MAX_REDELIVERIES``.
"""

from __future__ import annotations

import logging
from typing import Any

import dramatiq
import redis
from dramatiq.middleware import SkipMessage

from worker_app.arguments import mismatch
from worker_app.redis_client import key

log = logging.getLogger(__name__)
REDELIVERY_TTL_S = 7 * 24 * 3600


class RejectedMessage(SkipMessage):
    """The message cannot run at all; it is failed (dead-lettered) without reaching its actor.

    Dramatiq swallows ordinary exceptions raised in ``before_process_message``; a ``SkipMessage``
    on a failed message is the one way for a middleware to stop a message and nack it.
    """


def reject(message: Any, reason: str, text: str) -> None:
    """Fail ``message`` with ``reason`` (recorded on its dead letter) and stop it."""
    message.options["dead_reason"] = reason
    message.fail()
    raise RejectedMessage(text)


class ArgumentCheck(dramatiq.Middleware):
    """Dead-letters a message whose arguments do not fit its actor's signature or type hints."""

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        actor = broker.actors.get(message.actor_name)
        if actor is None:
            return
        reason = mismatch(message.actor_name, actor.fn, message.args, message.kwargs, strict=False)
        if reason is not None:
            reject(message, "bad_message", reason)


class RedeliveryLimit(dramatiq.Middleware):
    """Dead-letters a message redelivered more than ``max_redeliveries`` times."""

    def __init__(self, redis_client: redis.Redis, max_redeliveries: int) -> None:
        self.redis = redis_client
        self.max_redeliveries = max_redeliveries

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        if not getattr(message, "redelivered", False):
            return
        counter = key("redeliveries", message.message_id)
        try:
            with self.redis.pipeline() as pipe:
                pipe.incr(counter)
                pipe.expire(counter, REDELIVERY_TTL_S)
                count = int(pipe.execute()[0])
        except redis.RedisError as e:
            log.warning("cannot count redeliveries of %s: %s", message.message_id, e)
            return
        if count > self.max_redeliveries:
            reject(
                message,
                "redelivery_limit",
                f"redelivered {count} times without completing (a worker crashed or was killed running it)",
            )
