"""Bringing a user back after a renewal: what a payment (or an admin) calls, never a schedule.

``extend`` revives an EXPIRED user but leaves a DISABLED one disabled (HAZARDS.md), and
:mod:`actors.subscriptions.disable_expired` disables ACTIVE users the panel had not expired yet. So
a renewal first holds off that job for the user's current expiry (closing its action as
``renewed``, after waiting for a run that is disabling the user right now), then extends, then
enables the user — only if it was this job that disabled them for that expiry: a user an admin
disabled (a ban) stays disabled. ``extend`` is relative — ``expireAt = max(expireAt, now) + days``
— so the caller must call this once per payment (the payments domain keys it by invoice).
"""

from __future__ import annotations

import logging

from actors.subscriptions import actions
from actors.subscriptions.disable_expired import KIND, period_of
from worker_app.clients.remnawave import RemnawaveClient, User
from worker_app.db import Database

log = logging.getLogger(__name__)


def renew_user(client: RemnawaveClient, database: Database, user_id: int, days: int) -> User:
    """Extend ``user_id`` by ``days``; enable it if the expiry job had disabled it. The user afterwards."""
    before = client.get_user(user_id)
    outcome = actions.hold_off(database, KIND, user_id, period_of(before.expire_at), "renewed")
    user = client.extend_user(user_id, days)
    if user.status == "DISABLED":
        if outcome == "done":  # switched off by disable_expired_users for the expiry just renewed
            user = client.user_action(user_id, "enable") or client.get_user(user_id)
        else:
            log.warning("user %s renewed but left DISABLED: it was not disabled for expiring", user_id)
    return user
