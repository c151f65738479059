"""Per-domain retry policies and exhaustion actions (ARCHITECTURE.md §3), declared once.

The queue name is the domain. An actor may override its domain's policy with the actor option
``retry_policy=RetryPolicy(...)``, and only what a message's death does with
``when_exhausted=<action>``; nothing else sets retry counts, backoffs or exhaustion actions.

When a message is recorded dead (retries exhausted, a permanent error, bad arguments, the
redelivery limit, an unknown actor) its **exhaustion action** runs once
(:mod:`worker_app.exhaustion`):

* :class:`Alert` — an admin alert of that severity, de-duplicated by fingerprint
  (:mod:`worker_app.alerts`);
* :class:`Warn` — one WARNING log line naming the dead letter and how to replay it;
* :class:`Skip` — nothing beyond the dead letter: the next scheduled run does the work again;
* :class:`Defer` — the dead message is handed to another actor (``to.send(message, failure)``)
  that keeps it for later, e.g. a notification into ``notification_queue``; a message that died
  of a permanent error or bad input gets ``otherwise`` instead, since deferring cannot help it;
* :class:`Report` — the person who started the job (its ``initiated_by``, when that is a Telegram
  id) is told it failed; otherwise the admins, at ``info``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from worker_app.ordered import domain_of

Severity = Literal["info", "warning", "error", "critical"]
SEVERITIES: tuple[Severity, ...] = ("info", "warning", "error", "critical")


@dataclass(frozen=True)
class Alert:
    """Alert the admins at ``severity`` (``critical`` also reaches CRITICAL_TELEGRAM_IDS)."""

    severity: Severity = "warning"

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"Alert severity must be one of {SEVERITIES}, not {self.severity!r}")

    def __str__(self) -> str:
        return f"alert({self.severity})"


@dataclass(frozen=True)
class Warn:
    """A WARNING log line; nobody is paged."""

    def __str__(self) -> str:
        return "warn"


@dataclass(frozen=True)
class Skip:
    """One warning line and the dead letter: the next scheduled run does the work again."""

    def __str__(self) -> str:
        return "skip"


@dataclass(frozen=True)
class Report:
    """Tell whoever started the job (its ``initiated_by`` Telegram id; else the admins, at info)."""

    def __str__(self) -> str:
        return "report"


@dataclass(frozen=True)
class Defer:
    """Hand the dead message to the actor ``to`` (``to.send(message_dict, failure_dict)``); a
    permanent error or bad input runs ``otherwise`` instead."""

    to: str
    otherwise: Alert | Warn | Skip | Report = Warn()

    def __str__(self) -> str:
        return f"defer({self.to}; otherwise {self.otherwise})"


ExhaustionAction = Alert | Warn | Skip | Defer | Report

SECOND_MS = 1000
MINUTE_MS = 60 * SECOND_MS


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how late a failed message is tried again.

    ``backoff_ms[i]`` is the delay before retry ``i + 1``; the last value repeats when there are
    more retries than delays, and an empty tuple retries at once.
    """

    max_retries: int
    backoff_ms: tuple[int, ...] = ()
    when_exhausted: ExhaustionAction | None = None
    """``None``: the domain's action (an actor's own policy changes only its retries)."""

    def delay_ms(self, retry_number: int) -> int:
        """Delay before the ``retry_number``-th retry (1-based)."""
        if not self.backoff_ms:
            return 0
        return self.backoff_ms[min(retry_number, len(self.backoff_ms)) - 1]


#: Rate-limited retries (the upstream's own ``retry_after``) do not count as attempts, but are
#: capped so that a permanently throttled message still ends somewhere an operator can see it.
MAX_RATE_LIMITED_RETRIES = 50

POLICIES: dict[str, RetryPolicy] = {
    # send_notification: its last attempt queues the message itself; a message that still dies
    # (PostgreSQL down on that attempt, a bug) is deferred by the domain's defer_notification actor.
    "notifications": RetryPolicy(
        3, (10 * SECOND_MS, 30 * SECOND_MS, 90 * SECOND_MS), Defer("defer_notification")
    ),
    "subscriptions": RetryPolicy(3, (MINUTE_MS,), Alert("warning")),
    "monitoring": RetryPolicy(2, (15 * SECOND_MS,), Skip()),
    "payments": RetryPolicy(3, (30 * SECOND_MS, 2 * MINUTE_MS, 10 * MINUTE_MS), Alert("critical")),
    "analytics": RetryPolicy(1, (), Skip()),
    "cleanup": RetryPolicy(2, (5 * MINUTE_MS,), Warn()),
    "sync": RetryPolicy(3, (2 * MINUTE_MS,), Skip()),
    "reports": RetryPolicy(2, (10 * MINUTE_MS,), Alert("warning")),
    "bulk": RetryPolicy(0, (), Report()),
    # an update is retried in place by its actor (BOT_UPDATE_RETRIES): a retry through the delay
    # queue would let the chat's later updates overtake it (worker_app.ordered)
    "bot_updates": RetryPolicy(0, (), Warn()),
}

#: Every domain, which is also every queue the worker consumes.
DOMAINS: tuple[str, ...] = tuple(POLICIES)

#: Queues that are not a domain (tests, tools) get this: a few quick retries, then dead.
DEFAULT_POLICY = RetryPolicy(3, (10 * SECOND_MS, 30 * SECOND_MS, 90 * SECOND_MS), Alert("warning"))


def policy_for(queue_name: str) -> RetryPolicy:
    """The retry policy of ``queue_name`` (its ``.DQ``/``.XQ`` suffix ignored; a shard of an ordered
    domain has its domain's)."""
    return POLICIES.get(domain_of(queue_name), DEFAULT_POLICY)


def exhaustion_action(queue_name: str, actor_options: Mapping[str, Any] | None = None) -> ExhaustionAction:
    """What a dead message of ``queue_name`` does: the actor's ``when_exhausted`` option, else its
    own ``retry_policy``'s action, else its domain's."""
    options = actor_options or {}
    action = options.get("when_exhausted")
    if action is None and options.get("retry_policy") is not None:
        action = options["retry_policy"].when_exhausted
    if action is None:
        action = policy_for(queue_name).when_exhausted
    return action if action is not None else DEFAULT_POLICY.when_exhausted  # type: ignore[return-value]
