"""The panel's bulk user routes (``/api/users/bulk/...``). None answers with a body — only 202 or 204
— and ids that do not exist are ignored, as in the 3.3.2 panel; ``userIds`` is 1–500 integers.
"""

from __future__ import annotations

from collections.abc import Iterable

from sandbox.remnawave import format as fmt
from sandbox.remnawave.changes import apply_changes, reset_traffic, squads, user_changes
from sandbox.remnawave.format import DAY_MS, USER_STATUSES, PanelError, RwReply
from sandbox.remnawave.panel import Call, Panel
from sandbox.remnawave.records import UserRecord


def bulk_update(panel: Panel, call: Call) -> RwReply:
    """``bulk/update`` ``{"userIds", "fields"}``: each user as a PATCH would change it; A089 for a
    status of EXPIRED or LIMITED."""
    body = fmt.expect_object(call.body)
    ids = fmt.id_list(body)
    changes = user_changes(fmt.expect_object(body.get("fields"), ["fields"]), statuses=USER_STATUSES)
    if changes.get("status") in ("EXPIRED", "LIMITED"):
        raise PanelError("A089")
    for u in _existing(panel, ids):
        apply_changes(panel, u, changes, call.now)
    return RwReply(202, None)


def bulk_reset_traffic(panel: Panel, call: Call) -> RwReply:
    """``bulk/reset-traffic`` ``{"userIds"}``: as the one-user reset."""
    for u in _existing(panel, fmt.id_list(fmt.expect_object(call.body))):
        reset_traffic(panel, u, call.now)
    return RwReply(202, None)


def bulk_revoke(panel: Panel, call: Call) -> RwReply:
    """``bulk/revoke-subscription`` ``{"userIds"}``: new secrets and shortUuid for each."""
    for u in _existing(panel, fmt.id_list(fmt.expect_object(call.body))):
        panel.users.revoke(u, None, passwords_only=False, now=call.now)
    return RwReply(202, None)


def bulk_delete(panel: Panel, call: Call) -> RwReply:
    """``bulk/delete`` ``{"userIds"}``: 204."""
    panel.users.remove(fmt.id_list(fmt.expect_object(call.body)))
    return RwReply(204, None)


def bulk_update_squads(panel: Panel, call: Call) -> RwReply:
    """``bulk/update-squads`` ``{"userIds", "activeInternalSquads": [uuid, ...]}``: 204."""
    body = fmt.expect_object(call.body)
    ids = fmt.id_list(body)
    wanted = squads(body.get("activeInternalSquads"))
    for u in _existing(panel, ids):
        u.squads, u.updated_ms = wanted, call.now
    return RwReply(204, None)


def bulk_extend(panel: Panel, call: Call) -> RwReply:
    """``bulk/extend-expiration-date`` ``{"userIds", "extendDays": 1-9999}``: 204, see :func:`_extend_all`."""
    body = fmt.expect_object(call.body)
    ids = fmt.id_list(body)
    days = fmt.integer(body.get("extendDays"), ["extendDays"], lo=1, hi=9999)
    _extend_all(panel, _existing(panel, ids), days, call.now)
    return RwReply(204, None)


def bulk_delete_by_status(panel: Panel, call: Call) -> RwReply:
    """``bulk/delete-by-status`` ``{"status"}``: every user in that status."""
    status = fmt.choice(fmt.expect_object(call.body).get("status"), ["status"], USER_STATUSES)
    panel.users.remove([u.id for u in panel.users.records.values() if u.status == status])
    return RwReply(202, None)


def bulk_all_update(panel: Panel, call: Call) -> RwReply:
    """``bulk/all/update`` (the fields at the top level): every user; unlike a PATCH, a status is
    written as is whatever the user's; A089 for EXPIRED or LIMITED."""
    changes = user_changes(fmt.expect_object(call.body), statuses=USER_STATUSES)
    if changes.get("status") in ("EXPIRED", "LIMITED"):
        raise PanelError("A089")
    status = changes.pop("status", None)
    for u in list(panel.users.records.values()):
        apply_changes(panel, u, changes, call.now)
        if status is not None:  # bulk/all writes the status as is, whatever the user's
            panel.users.set_status(u, status, call.now)
    return RwReply(202, None)


def bulk_all_reset_traffic(panel: Panel, call: Call) -> RwReply:
    """``bulk/all/reset-traffic``: every user, as the one-user reset."""
    for u in list(panel.users.records.values()):
        reset_traffic(panel, u, call.now)
    return RwReply(202, None)


def bulk_all_extend(panel: Panel, call: Call) -> RwReply:
    """``bulk/all/extend-expiration-date`` ``{"extendDays": >= 1}``: every user, see :func:`_extend_all`."""
    days = fmt.integer(fmt.expect_object(call.body).get("extendDays"), ["extendDays"], lo=1)
    _extend_all(panel, list(panel.users.records.values()), days, call.now)
    return RwReply(202, None)


def _existing(panel: Panel, ids: Iterable[int]) -> list[UserRecord]:
    records = panel.users.records
    return [records[i] for i in dict.fromkeys(ids) if i in records]


def _extend_all(panel: Panel, users: Iterable[UserRecord], days: int, now: int) -> None:
    """Bulk extension: ``expireAt + days`` (no max with now), then EXPIRED users now in the future
    turn ACTIVE (the panel's bulkSyncExpiredUsers)."""
    for u in users:
        panel.users.set_expire(u, u.expire_ms + days * DAY_MS, now)
        if u.status == "EXPIRED" and u.expire_ms > now:
            panel.users.set_status(u, "ACTIVE", now)
