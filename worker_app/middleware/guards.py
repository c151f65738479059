"""Guards that turn unusable messages into dead letters instead of endless failures.

* wrong arguments: checked against the actor's signature before it runs — a ``TypeError`` from a
  bad producer is a :class:`BadMessage`, never retried;
* poison messages: a message that kills its worker process (OOM, segfault) comes back with its
  body unchanged, so Dramatiq's retry counter never grows. RabbitMQ marks it ``redelivered``;
  those deliveries are counted per message id in Redis and capped at ``MAX_REDELIVERIES``.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

import dramatiq
import redis

from worker_app.errors import BadMessage
from worker_app.redis_client import key

log = logging.getLogger(__name__)
REDELIVERY_TTL_S = 7 * 24 * 3600


class ArgumentCheck(dramatiq.Middleware):
    """Dead-letters a message whose arguments do not fit its actor's signature."""

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        actor = broker.actors.get(message.actor_name)
        if actor is None:
            return
        try:
            inspect.signature(actor.fn).bind(*message.args, **message.kwargs)
        except TypeError as e:
            raise BadMessage(f"arguments do not match {message.actor_name}{inspect.signature(actor.fn)}: {e}") from None


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
            message.options["dead_reason"] = "redelivery_limit"
            raise BadMessage(
                f"redelivered {count} times without completing (worker crashed or was killed while running it)"
            )
