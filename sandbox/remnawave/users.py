"""The panel's one-user routes (``/api/users...`` except ``bulk/``): list, stream, lookups, resolve,
create, PATCH, delete and the actions, with the 3.3.2 panel's status rules and error codes.

Each answer is a function of ``(panel, call)``; :mod:`sandbox.remnawave.routes` maps paths to them.
The field validation and PATCH rules are in :mod:`sandbox.remnawave.changes`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from sandbox.remnawave import format as fmt
from sandbox.remnawave.changes import apply_changes, assign, reset_traffic, user_changes
from sandbox.remnawave.format import (
    DAY_MS,
    STRATEGIES,
    USER_STATUSES,
    Invalid,
    PanelError,
    RwReply,
)
from sandbox.remnawave.panel import Call, Panel, coerce, ok
from sandbox.remnawave.records import UserRecord, user_json

_PATCH_STATUSES = ("ACTIVE", "DISABLED")

# --- reads ---


def list_users(panel: Panel, call: Call) -> RwReply:
    """``GET /api/users?start=&size=``: newest first (id descending), ``start`` counted from the newest."""
    start = fmt.integer(coerce(call.query, "start", 0), ["start"], lo=0)
    size = fmt.integer(coerce(call.query, "size", 25), ["size"], lo=1, hi=1000)
    ids, total = panel.users.ids, len(panel.users.ids)
    high = max(0, total - start)
    page = ids[max(0, high - size) : high][::-1]
    users = [user_json(panel.users.records[i]) for i in page]
    return ok({"users": users, "total": total})


def stream_users(panel: Panel, call: Call) -> RwReply:
    """``GET /api/users/stream``: id order after ``cursor``, filtered, ``nextCursor`` a string or null."""
    cursor = int(fmt.number(coerce(call.query, "cursor", 0), ["cursor"]))
    size = int(fmt.number(coerce(call.query, "size", 250), ["size"], lo=1, hi=1000))
    keep = _stream_filter(call.query)
    page: list[UserRecord] = []
    for u in _stream_candidates(panel, call.query, cursor):
        if keep(u):
            page.append(u)
            if len(page) > size:
                break
    has_more = len(page) > size
    page = page[:size]
    next_cursor = str(page[-1].id) if has_more else None
    return ok({"users": [user_json(u) for u in page], "nextCursor": next_cursor, "hasMore": has_more})


def _stream_candidates(panel: Panel, query: Mapping[str, str], cursor: int) -> Iterator[UserRecord]:
    if "telegramId" not in query:
        return panel.users.after(cursor)
    telegram_id = fmt.integer(coerce(query, "telegramId", None), ["telegramId"], lo=0)
    ids = sorted(i for i in panel.users.by_telegram.get(telegram_id, ()) if i > cursor)
    return (panel.users.records[i] for i in ids)


def _stream_filter(query: Mapping[str, str]) -> Callable[[UserRecord], bool]:
    """The stream's filters (telegramId is answered from its index instead)."""
    checks: list[Callable[[UserRecord], bool]] = []
    if "status" in query:
        status = fmt.choice(query["status"], ["status"], USER_STATUSES)
        checks.append(lambda u: u.status == status)
    if "trafficLimitStrategy" in query:
        strategy = fmt.choice(query["trafficLimitStrategy"], ["trafficLimitStrategy"], STRATEGIES)
        checks.append(lambda u: u.traffic_limit_strategy == strategy)
    if "email" in query:
        email = fmt.email(query["email"], ["email"])
        checks.append(lambda u: u.email == email)
    if "tag" in query:
        tag = query["tag"]
        checks.append(lambda u: u.tag == tag)
    if "externalSquadUuid" in query:
        squad = fmt.uuid_text(query["externalSquadUuid"], ["externalSquadUuid"])
        checks.append(lambda u: u.external_squad == squad)
    return lambda u: all(check(u) for check in checks)


def get_user(panel: Panel, call: Call) -> RwReply:
    """``GET /api/users/{id}``: the user or A063."""
    return ok(user_json(panel.users.get(user_id(call), "A063")))


def user_by_username(panel: Panel, call: Call) -> RwReply:
    """``GET /api/users/by-username/{username}``: the user or A063."""
    return _by_index(panel, panel.users.by_username, call.params["username"])


def user_by_short_uuid(panel: Panel, call: Call) -> RwReply:
    """``GET /api/users/by-short-uuid/{shortUuid}``: the user or A063."""
    return _by_index(panel, panel.users.by_short_uuid, call.params["shortUuid"])


def _by_index(panel: Panel, index: Mapping[str, int], key: str) -> RwReply:
    found = index.get(key)
    return ok(user_json(panel.users.get(-1 if found is None else found, "A063")))


def resolve_user(panel: Panel, call: Call) -> RwReply:
    """``POST /api/users/resolve``: exactly one of id / shortUuid / username → the three, or A025."""
    body = fmt.expect_object(call.body)
    given = [name for name in ("id", "shortUuid", "username") if body.get(name) is not None]
    if len(given) != 1:
        raise Invalid([], "custom", "Exactly one of id, shortUuid, or username must be provided")
    name = given[0]
    if name == "id":
        wanted = int(fmt.number(body["id"], ["id"]))
    else:
        key = fmt.text(body[name], [name])
        index = panel.users.by_short_uuid if name == "shortUuid" else panel.users.by_username
        wanted = index.get(key, -1)
    u = panel.users.get(wanted, "A025")
    return ok({"id": u.id, "username": u.username, "shortUuid": u.short_uuid})


# --- writes ---


def create_user(panel: Panel, call: Call) -> RwReply:
    """``POST /api/users``: 201 with the new user (any status, any expiry), A019 for a taken name."""
    body = fmt.expect_object(call.body)
    name = fmt.username(body.get("username"), ["username"])
    expire_ms = fmt.date_ms(body.get("expireAt"), ["expireAt"])
    status = fmt.choice(body.get("status", "ACTIVE"), ["status"], USER_STATUSES)
    changes = user_changes(body, statuses=USER_STATUSES, future_expiry=False)
    if name in panel.users.by_username:
        raise PanelError("A019")
    u = UserRecord(panel.users.next_id, name, status, expire_ms, call.now, call.now)
    panel.users.add_many([u])
    assign(panel, u, changes, call.now)
    return RwReply(201, {"response": user_json(u)})


def update_user(panel: Panel, call: Call) -> RwReply:
    """``PATCH /api/users``: by id or username (both must agree), with :func:`apply_changes` rules."""
    body = fmt.expect_object(call.body)
    if body.get("id") is None and body.get("username") is None:
        raise Invalid([], "custom", "At least one of username, id must be provided")
    changes = user_changes(body, statuses=_PATCH_STATUSES, future_expiry=True)
    u = _find_for_update(panel, body)
    apply_changes(panel, u, changes, call.now)
    return ok(user_json(u))


def _find_for_update(panel: Panel, body: Mapping[str, Any]) -> UserRecord:
    wanted = body.get("id")
    if wanted is not None:
        u = panel.users.get(int(fmt.number(wanted, ["id"])), "A025")
        if body.get("username") not in (None, u.username):
            raise PanelError("A025")
        return u
    found = panel.users.by_username.get(fmt.text(body["username"], ["username"]), -1)
    return panel.users.get(found, "A025")


def delete_user(panel: Panel, call: Call) -> RwReply:
    """``DELETE /api/users/{id}``: 204 without a body, or A025."""
    u = panel.users.get(user_id(call), "A025")
    panel.users.remove([u.id])
    return RwReply(204, None)


def disable_user(panel: Panel, call: Call) -> RwReply:
    """``POST .../actions/disable``: any status but DISABLED becomes DISABLED; A029 if it already is."""
    return _set_status(panel, call, "DISABLED", already="A029")


def enable_user(panel: Panel, call: Call) -> RwReply:
    """``POST .../actions/enable``: any status but ACTIVE becomes ACTIVE; A030 if it already is."""
    return _set_status(panel, call, "ACTIVE", already="A030")


def _set_status(panel: Panel, call: Call, status: str, *, already: str) -> RwReply:
    u = panel.users.get(user_id(call), "A025")
    if u.status == status:
        raise PanelError(already)
    panel.users.set_status(u, status, call.now)
    return ok(user_json(u))


def reset_user_traffic(panel: Panel, call: Call) -> RwReply:
    """``POST .../actions/reset-traffic``: see :func:`reset_traffic`."""
    u = panel.users.get(user_id(call), "A025")
    reset_traffic(panel, u, call.now)
    return ok(user_json(u))


def revoke_user(panel: Panel, call: Call) -> RwReply:
    """``POST .../actions/revoke``: new secrets (and shortUuid, unless ``revokeOnlyPasswords``); A020
    when the wanted ``shortUuid`` belongs to someone else."""
    u = panel.users.get(user_id(call), "A025")
    body = fmt.expect_object(call.body)
    only = body.get("revokeOnlyPasswords", False)
    if not isinstance(only, bool):
        raise Invalid(["revokeOnlyPasswords"], "invalid_type", "Invalid input: expected boolean")
    short_uuid = body.get("shortUuid")
    if short_uuid is not None:
        fmt.integer(len(fmt.text(short_uuid, ["shortUuid"])), ["shortUuid"], lo=16, hi=64)
        if panel.users.by_short_uuid.get(short_uuid, u.id) != u.id:
            raise PanelError("A020")
    panel.users.revoke(u, short_uuid, passwords_only=only, now=call.now)
    return ok(user_json(u))


def extend_user(panel: Panel, call: Call) -> RwReply:
    """``POST .../actions/extend`` ``{"days"}``: from ``max(expireAt, now)``; EXPIRED becomes ACTIVE."""
    u = panel.users.get(user_id(call), "A025")
    days = fmt.number(fmt.expect_object(call.body).get("days"), ["days"], lo=1)
    panel.users.set_expire(u, max(u.expire_ms, call.now) + int(days * DAY_MS), call.now)
    panel.users.set_status(u, "ACTIVE" if u.status == "EXPIRED" else u.status, call.now)
    return ok(user_json(u))


def user_id(call: Call) -> int:
    """The ``{id}`` path parameter; not a number is zod's NaN issue."""
    raw = call.params["id"]
    if not raw.isdigit():
        raise Invalid(
            ["id"], "invalid_type", "Invalid input: expected number, received NaN", expected="number"
        )
    return int(raw)
