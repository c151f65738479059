"""The per-domain retry table is ARCHITECTURE.md §3, declared once."""

from __future__ import annotations

from worker_app.policies import DEFAULT_POLICY, POLICIES, RetryPolicy, policy_for


def test_policy_table_matches_the_architecture() -> None:
    table = {q: (p.max_retries, p.backoff_ms) for q, p in POLICIES.items()}
    assert table == {
        "notifications": (3, (10_000, 30_000, 90_000)),
        "subscriptions": (3, (60_000,)),
        "monitoring": (2, (15_000,)),
        "payments": (3, (30_000, 120_000, 600_000)),
        "analytics": (1, ()),
        "cleanup": (2, (300_000,)),
        "sync": (3, (120_000,)),
        "reports": (2, (600_000,)),
        "bulk": (0, ()),
        "bot_updates": (0, ()),  # 3 retries in place, by its actor (BOT_UPDATE_RETRIES)
    }


def test_last_backoff_repeats_and_empty_backoff_retries_at_once() -> None:
    assert [RetryPolicy(4, (1, 2)).delay_ms(n) for n in (1, 2, 3, 4)] == [1, 2, 2, 2]
    assert RetryPolicy(1).delay_ms(1) == 0


def test_delay_and_dead_letter_queues_share_their_domains_policy() -> None:
    assert policy_for("payments.DQ") is POLICIES["payments"]
    assert policy_for("payments.XQ") is POLICIES["payments"]
    assert policy_for("something-else") is DEFAULT_POLICY
    assert policy_for("bot_updates.07") is POLICIES["bot_updates"]  # an ordered domain's shard
    assert policy_for("bot_updates.07.XQ") is POLICIES["bot_updates"]
