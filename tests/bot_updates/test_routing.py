"""Which chat an update is ordered by, and which shard that chat's updates go to."""

from __future__ import annotations

from typing import Any

import pytest

from actors.bot_updates.routing import chat_key
from worker_app.ordered import OrderedDomain


@pytest.mark.parametrize(
    ("update", "key"),
    [
        ({"update_id": 1, "message": {"chat": {"id": 42}, "text": "hi"}}, "chat:42"),
        ({"update_id": 1, "edited_message": {"chat": {"id": -100123}}}, "chat:-100123"),
        ({"update_id": 1, "channel_post": {"chat": {"id": -1001}}}, "chat:-1001"),
        ({"update_id": 1, "business_message": {"chat": {"id": 7}}}, "chat:7"),
        ({"update_id": 1, "my_chat_member": {"chat": {"id": 8}, "from": {"id": 9}}}, "chat:8"),
        ({"update_id": 1, "chat_join_request": {"chat": {"id": -5}, "from": {"id": 6}}}, "chat:-5"),
        ({"update_id": 1, "message_reaction": {"chat": {"id": 3}, "user": {"id": 4}}}, "chat:3"),
        # a button on a message: that message's chat; an inline-mode button: the user
        (
            {"update_id": 1, "callback_query": {"from": {"id": 11}, "message": {"chat": {"id": 12}}}},
            "chat:12",
        ),
        ({"update_id": 1, "callback_query": {"from": {"id": 11}, "inline_message_id": "x"}}, "chat:11"),
        ({"update_id": 1, "inline_query": {"from": {"id": 13}, "query": "q"}}, "chat:13"),
        ({"update_id": 1, "pre_checkout_query": {"from": {"id": 14}}}, "chat:14"),
        ({"update_id": 1, "poll_answer": {"user": {"id": 15}}}, "chat:15"),
        ({"update_id": 1, "poll_answer": {"voter_chat": {"id": -16}}}, "chat:-16"),
        ({"update_id": 1, "business_connection": {"user": {"id": 17}}}, "chat:17"),
        ({"update_id": 1, "poll": {"id": "5435"}}, "poll:5435"),
        # a field the Bot API adds later, or a malformed one: ordered with nothing, never dropped
        ({"update_id": 99, "some_future_update": {"x": 1}}, "update:99"),
        ({"update_id": 98, "message": {"chat": {"id": True}}}, "update:98"),
        ({"update_id": 97, "message": "not an object"}, "update:97"),
    ],
)
def test_an_update_is_keyed_by_its_chat(update: dict[str, Any], key: str) -> None:
    assert chat_key(update) == key


def test_a_chat_always_lands_in_one_shard_and_chats_spread_over_all() -> None:
    domain = OrderedDomain("bot_updates", 16, str)
    shards = [domain.shard_of(f"chat:{chat}") for chat in range(1000)]
    assert shards == [domain.shard_of(f"chat:{chat}") for chat in range(1000)]
    counts = [shards.count(i) for i in range(16)]
    assert min(counts) > 30, counts  # 62.5 each on average: a skewed hash would starve shards
    assert domain.queue(3) == "bot_updates.03"
    assert domain.queues()[-1] == "bot_updates.15"
    # stable across processes and Python versions: not hash() (salted per process)
    assert domain.shard_of("chat:42") == 9


def test_shard_counts_out_of_range_are_refused() -> None:
    with pytest.raises(ValueError, match=r"shards must be 1\.\.1000"):
        OrderedDomain("x", 0, str)
