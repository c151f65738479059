"""Alerting: runs each dead message's exhaustion action once, and alerts a new bug at once.

* **Exhaustion actions.** :class:`~worker_app.middleware.dead_letters.DeadLetters` calls
  :meth:`Alerting.on_dead` after it recorded a dead message. The action
  (:func:`worker_app.policies.exhaustion_action`: the actor's ``when_exhausted``, its own policy's,
  else its domain's) runs only when the store says it is due (:class:`~worker_app.dead_letters.Recorded`)
  and is then marked done on the row (``action_done_at``): a redelivered copy of a message whose
  action ran (its worker died before the nack) runs nothing; one whose worker died between
  recording and acting runs it. So it runs once per dead letter, after the dead letter is durable,
  and never for a message that will still be retried (those are not nacked).
  ``cybervpn_dead_letters_total{queue,reason}`` counts them.
* **Unexpected errors.** An exception that is neither transient nor a declared permanent error
  (:func:`worker_app.exhaustion.is_unexpected`) raises an ``error`` alert on every failure; the
  fingerprint de-duplication makes that one message per new kind of bug and window, even while the
  message is still being retried.

Raising an alert only appends to the process's buffer (:mod:`worker_app.alerts`): Telegram or Redis
being down costs the message path nothing. The buffer is flushed (up to 5 s) when the worker stops.
"""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING, Any

import dramatiq

from worker_app.dead_letters import DeadLetterRecord, Recorded
from worker_app.exhaustion import Deps, is_unexpected, run_exhaustion, unexpected_error_alert
from worker_app.lazy import created_once
from worker_app.policies import exhaustion_action, policy_for

if TYPE_CHECKING:
    from worker_app.runtime import Runtime

log = logging.getLogger(__name__)


@created_once
def _dead_letters_metric() -> Any:
    import prometheus_client as prom

    return prom.Counter(
        "cybervpn_dead_letters_total", "Messages recorded dead (first record of each).", ("queue", "reason")
    )


class Alerting(dramatiq.Middleware):
    """Exhaustion actions and first-occurrence alerts for bugs. ``deps`` is built on first use (the
    runtime's alerts need Telegram and Redis clients, which must not exist before the fork)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._broker: dramatiq.Broker | None = None

    @functools.cached_property
    def deps(self) -> Deps:
        broker = self._broker or dramatiq.get_broker()
        return Deps(self.runtime.alerts, broker, self.runtime.settings.dashboard_url)

    def after_process_boot(self, broker: dramatiq.Broker) -> None:
        self._broker = broker

    def after_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        self._broker = broker

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        if "alerts" in vars(self.runtime):  # only if this process raised an alert
            self.runtime.alerts.close(timeout_s=5.0)

    def after_process_message(
        self, broker: dramatiq.Broker, message: Any, *, result: Any = None, exception: Any = None
    ) -> None:
        if exception is None:
            return
        actor = broker.actors.get(message.actor_name)
        options: dict[str, Any] = actor.options if actor else {}
        if not is_unexpected(exception, options):
            return
        policy = options.get("retry_policy") or policy_for(message.queue_name)
        self.deps.alerts.raise_alert(unexpected_error_alert(message, exception, policy.max_retries))

    def on_dead(self, rec: DeadLetterRecord, recorded: Recorded) -> None:
        """Called once a dead message is recorded; runs its action if the record is new."""
        if not recorded.new:
            log.info("message %s was recorded dead before: its exhaustion action already ran", rec.message_id)
            return
        options: dict[str, Any] = {}
        if self._broker is not None and rec.actor_name in self._broker.actors:
            options = self._broker.actors[rec.actor_name].options
        acted = run_exhaustion(exhaustion_action(rec.queue_name, options), rec, recorded, self.deps)
        if acted and recorded.dead_letter_id is not None:
            self.runtime.dead_letters.mark_acted(recorded.dead_letter_id)
        _dead_letters_metric().labels(rec.queue_name, rec.reason).inc()
