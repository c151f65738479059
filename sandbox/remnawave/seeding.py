"""Seed data for the fake Remnawave panel: users from partial wire fields, a deterministic user
generator (100,000 users in about a second) and nodes — what ``POST /_sandbox/users`` and
``POST /_sandbox/nodes`` create, through :class:`sandbox.remnawave.state.RemnawaveState`.
"""

from __future__ import annotations

import random
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from itertools import accumulate
from typing import Any

from sandbox.remnawave import format as fmt
from sandbox.remnawave.format import (
    DAY_MS,
    GIB,
    HOUR_MS,
    MINUTE_MS,
    NODE_STATES,
    STRATEGIES,
    USER_STATUSES,
)
from sandbox.remnawave.records import NodeRecord, UserRecord

_COUNTRIES = ("DE", "NL", "FI", "US", "GB", "FR", "SE", "PL", "JP", "SG")


def _time(value: Any, path: list[str | int]) -> int:
    """ISO-8601 text or epoch milliseconds."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return fmt.date_ms(value, path)


_FIELDS: dict[str, tuple[str, Any]] = {
    # wire name: (record attribute, validator taking (value, path))
    "telegramId": ("telegram_id", lambda v, p: fmt.integer(v, p, lo=0)),
    "email": ("email", fmt.email),
    "description": ("description", fmt.text),
    "tag": ("tag", fmt.tag),
    "trafficLimitBytes": ("traffic_limit_bytes", lambda v, p: fmt.integer(v, p, lo=0)),
    "trafficLimitStrategy": ("traffic_limit_strategy", lambda v, p: fmt.choice(v, p, STRATEGIES)),
    "usedTrafficBytes": ("used_bytes", lambda v, p: fmt.integer(v, p, lo=0)),
    "lifetimeUsedTrafficBytes": ("lifetime_bytes", lambda v, p: fmt.integer(v, p, lo=0)),
    "lastTriggeredThreshold": ("last_threshold", lambda v, p: fmt.integer(v, p, lo=0)),
    "hwidDeviceLimit": ("hwid_limit", lambda v, p: fmt.integer(v, p, lo=0)),
    "externalSquadUuid": ("external_squad", fmt.uuid_text),
    "lastConnectedNodeUuid": ("last_node_uuid", fmt.uuid_text),
    "onlineAt": ("online_ms", _time),
    "lastTrafficResetAt": ("last_reset_ms", _time),
}


def users_from_fields(partials: Sequence[Mapping[str, Any]], first_id: int, now: int) -> list[UserRecord]:
    """Users from partial wire fields (``username``, ``status``, ``expireAt`` as ISO or epoch ms, ...).

    Defaults: username ``user<id>``, ACTIVE, expiring in 30 days, no telegram id. An ``id`` may be
    given if it is above the previous one. Unknown fields are refused (a typo should not seed quietly).
    """
    records: list[UserRecord] = []
    next_id = first_id
    for position, partial in enumerate(partials):
        if not isinstance(partial, Mapping):
            raise ValueError(f"users[{position}] must be an object")
        records.append(_user_from_fields(partial, next_id, now, f"users[{position}]"))
        next_id = records[-1].id + 1
    return records


def _user_from_fields(partial: Mapping[str, Any], default_id: int, now: int, where: str) -> UserRecord:
    unknown = (
        set(partial) - set(_FIELDS) - {"id", "username", "status", "expireAt", "createdAt", "userTraffic"}
    )
    if unknown:
        raise ValueError(f"{where}: unknown fields {sorted(unknown)}")
    user_id = fmt.integer(partial.get("id", default_id), [where, "id"], lo=default_id)
    created = _time(partial.get("createdAt", now), [where, "createdAt"])
    u = UserRecord(
        user_id,
        fmt.username(partial.get("username", f"user{user_id}"), [where, "username"]),
        fmt.choice(partial.get("status", "ACTIVE"), [where, "status"], USER_STATUSES),
        _time(partial.get("expireAt", now + 30 * DAY_MS), [where, "expireAt"]),
        created,
        created,
    )
    fields = {**partial, **(partial.get("userTraffic") or {})}
    for wire, (attribute, check) in _FIELDS.items():
        if fields.get(wire) is not None:
            setattr(u, attribute, check(fields[wire], [where, wire]))
    return u


def generated_users(
    first_id: int,
    count: int,
    *,
    now: int,
    seed: int = 1,
    statuses: Mapping[str, float] | None = None,
    expire_within_days: Sequence[float] = (-10, 10),
    without_telegram_fraction: float = 0.2,
    telegram_id_start: int | None = None,
) -> list[UserRecord]:
    """``count`` users, the same ones for the same ``seed``: statuses drawn with the given weights,
    ``expireAt`` drawn within ``expire_within_days`` of now (EXPIRED users always get a past one, so
    an ACTIVE user drawn in the past is expired by the panel's job on the next call), telegram ids
    ``telegram_id_start + i`` except for a ``without_telegram_fraction`` of them (by default
    ``100000000 + id - 1``, so that successive batches never share a telegram id)."""
    if not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= 1_000_000:
        raise ValueError("count must be an integer from 0 to 1,000,000")
    names, bounds = _weights(statuses or {"ACTIVE": 0.7, "DISABLED": 0.1, "LIMITED": 0.1, "EXPIRED": 0.1})
    low, high = _day_range(expire_within_days)
    if not 0 <= without_telegram_fraction <= 1:
        raise ValueError("without_telegram_fraction must be between 0 and 1")
    if telegram_id_start is None:
        telegram_id_start = 100_000_000 + first_id - 1
    rng = random.Random(seed)
    records = []
    for i in range(count):
        user_id = first_id + i
        status = names[bisect_right(bounds, rng.random() * bounds[-1])]
        expire = now + int(rng.uniform(low, high) * DAY_MS)
        if status == "EXPIRED" and expire >= now:
            expire = 2 * now - expire - MINUTE_MS
        telegram_id = None if rng.random() < without_telegram_fraction else telegram_id_start + i
        used = rng.randrange(100 * GIB)
        u = UserRecord(user_id, f"user{user_id}", status, expire, now - 90 * DAY_MS, now - DAY_MS)
        u.telegram_id, u.used_bytes, u.lifetime_bytes = telegram_id, used, used * 3
        if status == "LIMITED":
            u.traffic_limit_bytes = u.used_bytes = 100 * GIB
        records.append(u)
    return records


def _weights(statuses: Mapping[str, float]) -> tuple[list[str], list[float]]:
    if not isinstance(statuses, Mapping) or not set(statuses) <= set(USER_STATUSES):
        raise ValueError(f"statuses must map some of {list(USER_STATUSES)} to weights")
    weights = list(statuses.values())
    if any(not isinstance(w, int | float) or w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError("status weights must be non-negative numbers, not all zero")
    names = [name for name, w in statuses.items() if w > 0]
    bounds = list(accumulate(w for w in weights if w > 0))
    bounds[-1] += 1e-9  # the top draw never falls past the last status
    return names, bounds


def _day_range(days: Sequence[float]) -> tuple[float, float]:
    if len(days) != 2 or not all(isinstance(d, int | float) for d in days) or days[0] > days[1]:
        raise ValueError("expire_within_days must be [low, high] with low <= high")
    return float(days[0]), float(days[1])


def nodes_from_fields(specs: Sequence[Mapping[str, Any]], first_id: int, now: int) -> list[NodeRecord]:
    """Nodes from ``{"name"?, "countryCode"?, "state"?, "trafficUsedBytes"?, "usersOnline"?}``."""
    records = []
    for i, spec in enumerate(specs):
        node_id = first_id + i
        state = spec.get("state", "online")
        if state not in NODE_STATES:
            raise ValueError(f"nodes[{i}].state must be one of {list(NODE_STATES)}")
        node = NodeRecord(
            node_id,
            fmt.as_uuid(fmt.digest_hex("node", node_id)),
            fmt.text(spec.get("name", f"Node {node_id}"), [f"nodes[{i}]", "name"]),
            fmt.text(
                spec.get("countryCode", _COUNTRIES[node_id % len(_COUNTRIES)]), [f"nodes[{i}]", "countryCode"]
            ),
            state,
            now - 30 * DAY_MS,
            now - HOUR_MS,
        )
        node.traffic_used_bytes = fmt.integer(
            spec.get("trafficUsedBytes", 0), [f"nodes[{i}]", "trafficUsedBytes"], lo=0
        )
        node.users_online = fmt.integer(spec.get("usersOnline", 0), [f"nodes[{i}]", "usersOnline"], lo=0)
        records.append(node)
    return records


def generated_node_fields(count: int, first_id: int = 1) -> list[dict[str, Any]]:
    """``count`` online nodes in rotating countries with plausible traffic and online users."""
    return [
        {
            "name": f"{_COUNTRIES[i % len(_COUNTRIES)]}-{first_id + i}",
            "countryCode": _COUNTRIES[i % len(_COUNTRIES)],
            "state": "online",
            "trafficUsedBytes": (first_id + i) * 37 * GIB,
            "usersOnline": 3 * (first_id + i),
        }
        for i in range(count)
    ]
