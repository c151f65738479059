"""User field changes shared by the create, PATCH and bulk routes: validating a body's fields
(:func:`user_changes`) and applying them with the panel's updateUser status rules
(:func:`apply_changes`), through the indexes that depend on them; and the traffic reset."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sandbox.remnawave import format as fmt
from sandbox.remnawave.format import DEFAULT_SQUAD, STRATEGIES, Invalid
from sandbox.remnawave.panel import Panel
from sandbox.remnawave.records import UserRecord


def apply_changes(panel: Panel, u: UserRecord, changes: Mapping[str, Any], now: int) -> None:
    """PATCH semantics of the panel's updateUser (rules in its order; a later one wins)."""
    original, status = u.status, None
    wanted = changes.get("status")
    if wanted == "ACTIVE" and original != "ACTIVE":
        status = "ACTIVE"
    if wanted == "DISABLED" and original == "ACTIVE":
        status = "DISABLED"  # on a non-ACTIVE user: silently nothing (no A029)
    limit = changes.get("traffic_limit_bytes")
    if limit is not None and original == "LIMITED" and (limit > u.traffic_limit_bytes or limit == 0):
        status = "ACTIVE"
    expire_ms = changes.get("expire_ms")
    if original == "EXPIRED" and expire_ms is not None and wanted is None and expire_ms > now:
        status = "ACTIVE" if expire_ms != u.expire_ms else status
    assign(panel, u, changes, now)
    if limit is not None:
        u.last_threshold = 0
    panel.users.set_status(u, status or u.status, now)


def assign(panel: Panel, u: UserRecord, changes: Mapping[str, Any], now: int) -> None:
    """Write validated fields (not the status) through the indexes that depend on them."""
    for name, value in changes.items():
        if name == "telegram_id":
            panel.users.set_telegram(u, value)
        elif name == "expire_ms":
            panel.users.set_expire(u, value, now)
        elif name != "status":
            setattr(u, name, value)
    u.updated_ms = now


def squads(value: Any) -> list[dict[str, str]]:
    """``activeInternalSquads`` (a list of uuids) as the squad objects a user carries."""
    if not isinstance(value, list):
        raise Invalid(["activeInternalSquads"], "invalid_type", "Invalid input: expected array")
    uuids = [fmt.uuid_text(v, ["activeInternalSquads", i]) for i, v in enumerate(value)]
    return [
        DEFAULT_SQUAD if u == DEFAULT_SQUAD["uuid"] else {"uuid": u, "name": f"Squad-{u[:8]}"} for u in uuids
    ]


_CHANGE_FIELDS: dict[str, tuple[str, Callable[[Any, list[str | int]], Any], bool]] = {
    # wire name: (record attribute, validator, nullable)
    "trafficLimitBytes": ("traffic_limit_bytes", lambda v, p: int(fmt.number(v, p, lo=0)), False),
    "trafficLimitStrategy": ("traffic_limit_strategy", lambda v, p: fmt.choice(v, p, STRATEGIES), False),
    "description": ("description", fmt.text, True),
    "tag": ("tag", fmt.tag, True),
    "telegramId": ("telegram_id", lambda v, p: int(fmt.number(v, p)), True),
    "email": ("email", fmt.email, True),
    "hwidDeviceLimit": ("hwid_limit", lambda v, p: fmt.integer(v, p, lo=0), True),
    "externalSquadUuid": ("external_squad", fmt.uuid_text, True),
    "activeInternalSquads": ("squads", lambda v, p: squads(v), False),
}


def user_changes(
    body: Mapping[str, Any], *, statuses: Sequence[str], future_expiry: bool = True
) -> dict[str, Any]:
    """The validated user fields of a create / PATCH / bulk body, as record attribute names."""
    changes: dict[str, Any] = {}
    if body.get("status") is not None:
        changes["status"] = fmt.choice(body["status"], ["status"], statuses)
    if body.get("expireAt") is not None:
        changes["expire_ms"] = fmt.date_ms(body["expireAt"], ["expireAt"], future=future_expiry)
    for wire, (attribute, check, nullable) in _CHANGE_FIELDS.items():
        if wire not in body:
            continue
        value = body[wire]
        if value is None and not nullable:
            raise Invalid([wire], "invalid_type", "Invalid input: expected a value, received null")
        changes[attribute] = None if value is None else check(value, [wire])
    return changes


def reset_traffic(panel: Panel, u: UserRecord, now: int) -> None:
    """Zero the used traffic and the threshold, stamp the reset; a LIMITED user becomes ACTIVE."""
    u.used_bytes, u.last_reset_ms, u.last_threshold = 0, now, 0
    panel.users.set_status(u, "ACTIVE" if u.status == "LIMITED" else u.status, now)
