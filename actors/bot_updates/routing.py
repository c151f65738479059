"""Which chat an update belongs to: the key its order is kept by.

Telegram's ``Update`` carries exactly one optional field besides ``update_id``
(https://core.telegram.org/bots/api#update). Updates that happen in a chat (messages, edits, channel
posts, business messages, reactions, member changes, join requests, boosts, deleted business
messages) are keyed by that chat's id; updates that come from a user outside any chat (inline
queries, chosen inline results, shipping and pre-checkout queries, poll answers, paid media
purchases, business connections) by the user's id, which is also their private chat's id, so a
user's button presses and messages stay in one order. A callback query is keyed by the chat of the
message its button is on (an inline-mode button has none: the user). A poll's state carries no chat
or user: it is keyed by the poll id. Anything else (a field added to the Bot API later) is keyed by
its update id, so it is ordered with nothing, never dropped.
"""

from __future__ import annotations

from typing import Any

#: Update fields whose object names its chat as ``chat.id``.
_CHAT_FIELDS = (
    "message",
    "edited_message",
    "channel_post",
    "edited_channel_post",
    "business_message",
    "edited_business_message",
    "deleted_business_messages",
    "message_reaction",
    "message_reaction_count",
    "my_chat_member",
    "chat_member",
    "chat_join_request",
    "chat_boost",
    "removed_chat_boost",
)
#: Update fields whose object names its user as ``from.id`` (or ``user.id``).
_USER_FIELDS = (
    "inline_query",
    "chosen_inline_result",
    "shipping_query",
    "pre_checkout_query",
    "purchased_paid_media",
    "business_connection",
    "poll_answer",
)


def _id(obj: Any, *path: str) -> Any:
    for part in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)
    return obj if isinstance(obj, int | str) and not isinstance(obj, bool) else None


def chat_key(update: dict[str, Any]) -> str:
    """The ordering key of ``update``: ``chat:<id>``, ``poll:<id>`` or ``update:<update_id>``."""
    for field in _CHAT_FIELDS:
        if field in update:
            found = _id(update[field], "chat", "id")
            if found is not None:
                return f"chat:{found}"
    callback = update.get("callback_query")
    if isinstance(callback, dict):
        found = _id(callback, "message", "chat", "id") or _id(callback, "from", "id")
        if found is not None:
            return f"chat:{found}"
    for field in _USER_FIELDS:
        if field in update:
            obj = update[field]
            found = _id(obj, "voter_chat", "id") or _id(obj, "from", "id") or _id(obj, "user", "id")
            if found is not None:
                return f"chat:{found}"
    poll = _id(update.get("poll"), "id")
    if poll is not None:
        return f"poll:{poll}"
    return f"update:{update.get('update_id')}"
