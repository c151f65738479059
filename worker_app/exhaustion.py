"""What happens when a message dies, and the alert a new bug raises before it dies.

:func:`run_exhaustion` runs a dead message's exhaustion action (:mod:`worker_app.policies`) once the
dead letter is durable; :func:`unexpected_error_alert` builds the alert for an exception that is
neither transient nor a declared permanent error, raised on its first occurrence while the message
is still being retried. :class:`~worker_app.middleware.alerting.Alerting` calls both.

An alert about a dead letter reads::

    [CRITICAL] payments: process_payment died (retries_exhausted)
    UpstreamUnavailable: Crypto Pay answered 503
    attempts: 4 · first failure 2026-12-06 20:10:01 UTC · last 20:22:41 UTC
    queue: payments · trace: 1f2e… · dead letter #123
    replay: worker-app dlq replay 123        (or the dashboard link, with DASHBOARD_URL)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import dramatiq
from dramatiq.common import q_name

from worker_app.alerts import AdminAlerts, AlertEvent, fingerprint
from worker_app.dead_letters import DeadLetterRecord, Recorded, describe_exception
from worker_app.errors import JobCancelled, TransientError
from worker_app.jobs import initiator_chat_id
from worker_app.middleware.retries import is_permanent
from worker_app.policies import Alert, Defer, ExhaustionAction, Report, Severity, Skip, Warn

log = logging.getLogger(__name__)

PERMANENT_REASONS = frozenset(
    {"permanent_error", "bad_message", "unknown_actor", "undecodable", "redelivery_limit", "age_limit"}
)
"""Deaths that trying again later cannot fix, or must not (a message that killed its worker, one
too old to matter): a :class:`~worker_app.policies.Defer` runs its ``otherwise`` for them."""


@dataclass(frozen=True)
class Deps:
    """What the actions need from the process."""

    alerts: AdminAlerts
    broker: dramatiq.Broker | None
    dashboard_url: str | None = None


def run_exhaustion(action: ExhaustionAction, rec: DeadLetterRecord, recorded: Recorded, deps: Deps) -> bool:
    """Run ``action`` for the dead message ``rec``; whether it ran. Never raises: a failure is
    logged and alerted (and the action stays due for a redelivered copy)."""
    if isinstance(action, Defer) and rec.reason in PERMANENT_REASONS:
        action = action.otherwise
    log.info(
        "%s: exhaustion action %s",
        _name(rec, recorded), action,
        extra={"event": "exhaustion", "action": str(action), "message_id": rec.message_id,
               "dead_letter_id": recorded.dead_letter_id, "queue": rec.queue_name, "actor": rec.actor_name},
    )  # fmt: skip
    try:
        _RUN[type(action)](action, rec, recorded, deps)
        return True
    except Exception as e:  # an action must never break the nack of the message it is about
        log.exception("exhaustion action %s for %s failed", action, _name(rec, recorded))
        deps.alerts.raise_alert(
            AlertEvent(
                "incident", "error", f"incident:exhaustion:{type(action).__name__}",
                f"exhaustion action {action} failed: {type(e).__name__}: {e}",
                f"exhaustion action {action} failed for {_name(rec, recorded)}: {type(e).__name__}: {e}\n"
                f"{replay_hint(recorded, rec, deps.dashboard_url)}",
            )
        )  # fmt: skip
        return False


def _alert(action: Alert, rec: DeadLetterRecord, recorded: Recorded, deps: Deps) -> None:
    deps.alerts.raise_alert(dead_letter_alert(rec, recorded, action.severity, deps.dashboard_url))


def _warn(action: Warn, rec: DeadLetterRecord, recorded: Recorded, deps: Deps) -> None:
    log.warning(
        "%s: %s died (%s) after %d attempt(s): %s; %s",
        rec.queue_name, rec.actor_name or "message", rec.reason, rec.attempts, _error(rec),
        replay_hint(recorded, rec, deps.dashboard_url),
    )  # fmt: skip


def _skip(action: Skip, rec: DeadLetterRecord, recorded: Recorded, deps: Deps) -> None:
    """One warning, nothing more: the next scheduled run does the work again; the dead letter is the
    record."""
    log.warning(
        "%s: %s skipped after %d attempt(s) (%s): %s; the next scheduled run does the work",
        rec.queue_name, rec.actor_name or "message", rec.attempts, rec.reason, _error(rec),
    )  # fmt: skip


def _defer(action: Defer, rec: DeadLetterRecord, recorded: Recorded, deps: Deps) -> None:
    if deps.broker is None:
        raise RuntimeError("no broker to defer to")
    message = {
        "message_id": rec.message_id, "queue_name": rec.queue_name, "actor_name": rec.actor_name,
        "args": rec.args or [], "kwargs": rec.kwargs or {}, "options": rec.options or {},
    }  # fmt: skip
    failure = {
        "reason": rec.reason, "exception_type": rec.exception_type,
        "exception_message": rec.exception_message, "attempts": rec.attempts,
        "dead_letter_id": recorded.dead_letter_id,
    }  # fmt: skip
    options: dict[str, Any] = {"trace_id": rec.trace_id} if rec.trace_id else {}
    deps.broker.get_actor(action.to).send_with_options(args=(message, failure), **options)


def _report(action: Report, rec: DeadLetterRecord, recorded: Recorded, deps: Deps) -> None:
    initiator = initiator_chat_id(((rec.options or {}).get("job") or {}).get("initiated_by"))
    event = dead_letter_alert(rec, recorded, "info", deps.dashboard_url, kind="report")
    if initiator is not None:
        # one report per job: a job is its own fingerprint, never folded into another's
        event = AlertEvent(
            "report", "warning", f"report:{rec.message_id}", event.title,
            f"Your job failed.\n{event.text}", recipients=(initiator,),
        )  # fmt: skip
    deps.alerts.raise_alert(event)


_RUN: Mapping[type, Callable[[Any, DeadLetterRecord, Recorded, Deps], None]] = {
    Alert: _alert, Warn: _warn, Skip: _skip, Defer: _defer, Report: _report,
}  # fmt: skip


def dead_letter_alert(
    rec: DeadLetterRecord,
    recorded: Recorded,
    severity: Severity,
    dashboard_url: str | None,
    *,
    kind: str = "dead_letter",
) -> AlertEvent:
    """The alert naming everything an on-call admin needs about one dead letter."""
    who = rec.actor_name or "undecodable message"
    title = f"{rec.queue_name}: {who} died ({rec.reason}): {_error(rec)}"[:200]
    text = "\n".join([
        f"{rec.queue_name}: {who} died ({rec.reason})",
        _error(rec),
        f"attempts: {rec.attempts} · first failure {_stamp(rec.first_failed_at)}"
        f" · last {_stamp(rec.last_failed_at)}",
        f"queue: {rec.queue_name} · trace: {rec.trace_id or '-'} · {_dead_letter(recorded)}",
        replay_hint(recorded, rec, dashboard_url),
    ])  # fmt: skip
    fp = fingerprint(kind, rec.actor_name or rec.queue_name, rec.exception_type, rec.exception_message)
    return AlertEvent(kind, severity, fp, title, text)


def is_unexpected(exception: BaseException, actor_options: Mapping[str, Any]) -> bool:
    """A bug: neither transient (ours or a connection/timeout error of a library) nor a declared
    permanent error, nor a cancellation."""
    transient = isinstance(exception, (TransientError, JobCancelled, *_TRANSIENT))
    return not transient and not is_permanent(exception, actor_options)


def unexpected_error_alert(message: Any, exception: BaseException, max_retries: int) -> AlertEvent:
    """The first-occurrence alert of a bug, raised while the message may still be retried."""
    kind, text, _trace = describe_exception(exception)
    attempt = message.options.get("retries", 0) + 1
    queue = q_name(message.queue_name)
    retrying = attempt <= max_retries and not message.failed
    fate = f"attempt {attempt}: not retried"
    if retrying:
        fate = f"will be retried (attempt {attempt} of {max_retries + 1})"
    body = "\n".join([
        f"{queue}: new error in {message.actor_name} (a bug?)",
        f"{kind}: {text}",
        f"message {message.message_id} {fate}",
        f"trace: {message.options.get('trace_id') or '-'}"
        " · the traceback is in the log and, once it dies, the dead letter",
    ])  # fmt: skip
    title = f"{queue}: new error in {message.actor_name}: {kind}: {text}"[:200]
    fp = fingerprint("unexpected_error", message.actor_name, kind, text)
    return AlertEvent("unexpected_error", "error", fp, title, body)


def replay_hint(recorded: Recorded, rec: DeadLetterRecord, dashboard_url: str | None) -> str:
    """The one command (or dashboard page) that replays the dead letter."""
    if recorded.dead_letter_id is None:
        return f"replay: worker-app dlq drain, then worker-app dlq list --actor {rec.actor_name or '?'}"
    if dashboard_url:
        return f"replay: {dashboard_url.rstrip('/')}/dead-letters/{recorded.dead_letter_id}"
    return f"replay: worker-app dlq replay {recorded.dead_letter_id}"


def _name(rec: DeadLetterRecord, recorded: Recorded) -> str:
    return f"{_dead_letter(recorded)} ({rec.actor_name or rec.queue_name}, message {rec.message_id})"


def _dead_letter(recorded: Recorded) -> str:
    if recorded.dead_letter_id is not None:
        return f"dead letter #{recorded.dead_letter_id}"
    if recorded.where == "spool":
        return "dead letter spooled in Redis (PostgreSQL down)"
    return "dead letter in the log only"


def _error(rec: DeadLetterRecord) -> str:
    kind = (rec.exception_type or "error").rsplit(".", 1)[-1]
    return f"{kind}: {rec.exception_message}" if rec.exception_message else kind


def _stamp(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _transient_types() -> tuple[type[BaseException], ...]:
    import pika.exceptions
    import redis
    import requests
    import sqlalchemy.exc
    from dramatiq.middleware.time_limit import TimeLimitExceeded

    return (
        ConnectionError, TimeoutError, dramatiq.errors.BrokerConnectionError,
        dramatiq.errors.RateLimitExceeded, dramatiq.errors.Retry, TimeLimitExceeded,
        requests.ConnectionError, requests.Timeout,
        redis.ConnectionError, redis.TimeoutError, sqlalchemy.exc.OperationalError,
        sqlalchemy.exc.DisconnectionError, pika.exceptions.AMQPConnectionError,
    )  # fmt: skip


_TRANSIENT = _transient_types()
