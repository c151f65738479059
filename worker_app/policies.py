"""Per-domain retry policies (ARCHITECTURE.md §3), declared once.

The queue name is the domain. An actor may override its domain's policy with the actor option
``retry_policy=RetryPolicy(...)``; nothing else sets retry counts or backoffs.
"""

from __future__ import annotations

from dataclasses import dataclass

from dramatiq.common import q_name

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
    when_exhausted: str = "recorded as a dead letter"

    def delay_ms(self, retry_number: int) -> int:
        """Delay before the ``retry_number``-th retry (1-based)."""
        if not self.backoff_ms:
            return 0
        return self.backoff_ms[min(retry_number, len(self.backoff_ms)) - 1]


#: Rate-limited retries (the upstream's own ``retry_after``) do not count as attempts, but are
#: capped so that a permanently throttled message still ends somewhere an operator can see it.
MAX_RATE_LIMITED_RETRIES = 50

POLICIES: dict[str, RetryPolicy] = {
    "notifications": RetryPolicy(
        3, (10 * SECOND_MS, 30 * SECOND_MS, 90 * SECOND_MS), "insert into notification_queue"
    ),
    "subscriptions": RetryPolicy(3, (MINUTE_MS,), "log + admin alert"),
    "monitoring": RetryPolicy(2, (15 * SECOND_MS,), "skip; next scheduled run"),
    "payments": RetryPolicy(3, (30 * SECOND_MS, 2 * MINUTE_MS, 10 * MINUTE_MS), "CRITICAL admin alert"),
    "analytics": RetryPolicy(1, (), "skip"),
    "cleanup": RetryPolicy(2, (5 * MINUTE_MS,), "warning log"),
    "sync": RetryPolicy(3, (2 * MINUTE_MS,), "skip until next cycle"),
    "reports": RetryPolicy(2, (10 * MINUTE_MS,), "admin alert"),
    "bulk": RetryPolicy(0, (), "partial failure reported"),
}

#: Every domain, which is also every queue the worker consumes.
DOMAINS: tuple[str, ...] = tuple(POLICIES)

#: Queues that are not a domain (tests, tools) get this: a few quick retries, then dead.
DEFAULT_POLICY = RetryPolicy(3, (10 * SECOND_MS, 30 * SECOND_MS, 90 * SECOND_MS))


def policy_for(queue_name: str) -> RetryPolicy:
    """The retry policy of ``queue_name`` (its ``.DQ``/``.XQ`` suffix ignored)."""
    return POLICIES.get(q_name(queue_name), DEFAULT_POLICY)
