"""Tier 1: fleet-wide drainer slots on real Redis."""

from __future__ import annotations

from typing import Any

from actors.notifications.slots import SLOTS_KEY, DrainerSlots


def test_slots_cap_concurrent_drains_and_free_up_when_their_holder_dies(redis_client: Any) -> None:
    slots = DrainerSlots(redis_client, max_holders=2, ttl_s=60)
    assert slots.acquire("a") and slots.acquire("b")
    assert not slots.acquire("c")
    assert slots.acquire("a")  # the same holder again: idempotent
    # a holder that died long ago no longer counts, nor blocks a new drain
    redis_client.zadd(SLOTS_KEY, {"b": 1})
    assert slots.holders() == 1
    assert slots.acquire("c")
    slots.release("a")
    assert slots.holders() == 1
