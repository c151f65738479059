"""Bringing a user back after a renewal: what a payment (or an admin) calls, never a schedule.

``extend`` revives an EXPIRED user but leaves a DISABLED one disabled (HAZARDS.md), and
:mod:`actors.subscriptions.disable_expired` disables users the panel had not expired yet. So a
renewal extends, then enables the user if it is DISABLED (A030 "already enabled" is success).
``extend`` is relative — ``expireAt = max(expireAt, now) + days`` — so the caller must call this
once per payment (the payments domain keys it by invoice).
"""

from __future__ import annotations

from worker_app.clients.remnawave import RemnawaveClient, User


def renew_user(client: RemnawaveClient, user_id: int, days: int) -> User:
    """Extend ``user_id`` by ``days`` and make sure it is not left DISABLED; the user afterwards."""
    user = client.extend_user(user_id, days)
    if user.status == "DISABLED":
        user = client.user_action(user_id, "enable") or client.get_user(user_id)
    return user
