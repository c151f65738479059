"""Guards that turn unusable messages into dead letters instead of endless failures.

* wrong arguments: checked against the actor's signature and type hints before it runs
  (:mod:`worker_app.arguments`) — a bad producer's message is dead as ``bad_message``, never retried;
* poison messages: a message that kills its worker process (OOM, segfault) comes back with its
  body unchanged, so Dramatiq's retry counter never grows. The times a message was running when
  its process died are counted per message id in Redis and capped at ``MAX_REDELIVERIES``.
"""

from __future__ import annotations

import logging
import threading
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


# KEYS: the message's "running" marker, its crash counter. ARGV: TTL s. A marker still set means the
# message was running when its worker died: it is consumed and one crash counted. Returns
# {suspect 0|1, crashes so far}.
_CHECK_REDELIVERED = """
if redis.call('DEL', KEYS[1]) == 1 then
  local n = redis.call('INCR', KEYS[2])
  redis.call('EXPIRE', KEYS[2], ARGV[1])
  return {1, n}
end
return {0, tonumber(redis.call('GET', KEYS[2]) or '0')}
"""


class _SoloGate:
    """Lets a suspect message run alone in its process: it waits until the messages running have
    ended and holds new ones back until it is done. Everything else passes through one uncontended
    lock acquire on the way in and one on the way out."""

    def __init__(self) -> None:
        # enter/leave take the lock itself: Condition's __enter__/__exit__ are Python calls, where a
        # thread can lose the GIL while holding the lock and stall every worker thread behind it
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._running = 0
        self._solo = False
        self._waiting = 0  # threads in _wait(): only then is a notify needed
        self._local = threading.local()

    def _wait(self) -> None:
        self._waiting += 1
        try:
            self._cond.wait()
        finally:
            self._waiting -= 1

    def enter(self, *, alone: bool = False) -> None:
        with self._lock:
            while self._solo:
                self._wait()
            if alone:
                self._solo = True
                while self._running:
                    self._wait()
            self._running += 1
        self._local.alone = alone  # None: this thread is not inside

    def leave(self) -> None:
        alone = getattr(self._local, "alone", None)
        if alone is None:
            return  # an earlier middleware skipped the message before it reached the gate
        self._local.alone = None
        with self._lock:
            self._running -= 1
            if alone:
                self._solo = False
            if self._waiting:
                self._cond.notify_all()


class RedeliveryLimit(dramatiq.Middleware):
    """Dead-letters a message that keeps killing the worker process running it.

    RabbitMQ's ``redelivered`` flag cannot tell the killer from the innocent messages the dead process
    had only prefetched, which come back flagged too: counting the flag would dead-letter a healthy
    message queued behind a killer (the reliability suite caught exactly that). So a redelivered
    message sets a "running" marker in Redis when it starts running and clears it when it ends
    (either way); a delivery that finds its marker still set was running when its worker died, and
    counts one crash. Such a *suspect* then runs alone in its process (:class:`_SoloGate`): when the killer
    strikes again nothing innocent is running beside it, so an innocent message counts at most the
    one crash it happened to run beside before anyone was suspect. ``max_redeliveries`` (at least
    2 for that reason) crashes seen this way and the next delivery is dead (``redelivery_limit``):
    the killer runs ``max_redeliveries + 1`` times in all. Only redelivered messages touch Redis,
    so the hot path pays nothing but the gate's lock. With Redis unreachable the check is skipped.
    """

    def __init__(self, redis_client: redis.Redis, max_redeliveries: int) -> None:
        self.redis = redis_client
        self.max_redeliveries = max_redeliveries
        self._check = redis_client.register_script(_CHECK_REDELIVERED)
        self._gate = _SoloGate()

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        redelivered = getattr(message, "redelivered", False)
        suspect, crashes = self._crashes(message) if redelivered else (False, 0)
        if crashes >= self.max_redeliveries:
            reject(
                message,
                "redelivery_limit",
                f"its worker process died {crashes + 1} times while running it (killed, out of memory "
                "or crashed)",
            )
        self._gate.enter(alone=suspect)
        if redelivered:  # set only once it runs: waiting at the gate when a killer strikes is no crash
            try:
                self.redis.set(_keys(message)[0], "1", ex=REDELIVERY_TTL_S)
            except redis.RedisError as e:
                log.warning("cannot mark %s running: %s", message.message_id, e)

    def after_process_message(
        self, broker: dramatiq.Broker, message: Any, *, result: Any = None, exception: Any = None
    ) -> None:
        # The marker goes before the gate opens: a suspect waiting at the gate may be the killer,
        # and if it strikes before this message's marker is cleared, this message is charged a
        # crash it ran no part in (seen in CI: a healthy message dead after two such charges).
        try:
            if getattr(message, "redelivered", False):
                self._clear_running(message)
        finally:
            self._gate.leave()

    after_skip_message = after_process_message

    def _clear_running(self, message: Any) -> None:
        try:
            self.redis.delete(_keys(message)[0])
        except redis.RedisError as e:
            log.warning("cannot clear the running marker of %s: %s", message.message_id, e)

    def _crashes(self, message: Any) -> tuple[bool, int]:
        """Whether it was running at its last worker's death, and the crashes counted so far."""
        try:
            suspect, crashes = self._check(keys=_keys(message), args=[REDELIVERY_TTL_S])
        except redis.RedisError as e:
            log.warning("cannot count redeliveries of %s: %s", message.message_id, e)
            return False, 0
        return bool(suspect), int(crashes)


def _keys(message: Any) -> list[str]:
    return [key("running", message.message_id), key("redeliveries", message.message_id)]
