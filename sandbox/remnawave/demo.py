"""The demo behind ``python -m sandbox --demo`` (and ``worker-app sandbox --demo``): six nodes, one in
every state, and 24 users in every status and reminder bracket, some without a telegram id, registered
over the last 10 days (so the analytics backfill of a demo has something to count)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sandbox.remnawave import format as fmt
from sandbox.remnawave.format import DAY_MS, GIB, HOUR_MS, MINUTE_MS

if TYPE_CHECKING:
    from sandbox.remnawave.state import RemnawaveState

DEMO_TELEGRAM_START = 200_000_001


def seed_demo(state: RemnawaveState, now: int | None = None) -> dict[str, Any]:
    """Seed the demo: nodes in every state and users in every status, with ACTIVE users expired
    minutes ago (the panel's job will mark them), users in each reminder bracket (< 6 h, < 24 h,
    < 3 d, < 7 d), some far away and some without a telegram id; telegram ids from 200000001."""
    now = fmt.now_ms() if now is None else now
    nodes = state.add_nodes(_DEMO_NODES)
    users = state.seed_users([_demo_user(i, spec, now) for i, spec in enumerate(_DEMO_USERS)])
    return {"ok": True, "users": users["created"], "nodes": nodes["created"]}


def _demo_user(position: int, spec: tuple[str, float, bool], now: int) -> dict[str, Any]:
    status, expire_in_ms, has_telegram = spec
    user: dict[str, Any] = {"status": status, "expireAt": now + int(expire_in_ms)}
    user["username"] = f"demo_{status.lower()}_{position + 1}"
    user["createdAt"] = now - (position % 10 + 1) * DAY_MS  # registered over the last 10 days
    user["usedTrafficBytes"] = (position + 1) * GIB // 4
    if has_telegram:
        user["telegramId"] = DEMO_TELEGRAM_START + position
    if status == "LIMITED":
        user["trafficLimitBytes"] = user["usedTrafficBytes"] = 50 * GIB
    return user


_DEMO_NODES = [
    {
        "name": "Frankfurt-1",
        "countryCode": "DE",
        "state": "online",
        "trafficUsedBytes": 812 * GIB,
        "usersOnline": 41,
    },
    {
        "name": "Amsterdam-1",
        "countryCode": "NL",
        "state": "online",
        "trafficUsedBytes": 534 * GIB,
        "usersOnline": 27,
    },
    {
        "name": "Helsinki-1",
        "countryCode": "FI",
        "state": "online",
        "trafficUsedBytes": 221 * GIB,
        "usersOnline": 12,
    },
    {"name": "NewYork-1", "countryCode": "US", "state": "offline", "trafficUsedBytes": 97 * GIB},
    {"name": "London-1", "countryCode": "GB", "state": "connecting", "trafficUsedBytes": 15 * GIB},
    {"name": "Paris-1", "countryCode": "FR", "state": "disabled", "trafficUsedBytes": 3 * GIB},
]
_DEMO_USERS: list[tuple[str, float, bool]] = [  # (status, expireAt - now in ms, has a telegram id)
    *[("ACTIVE", -m * MINUTE_MS, True) for m in (2, 5, 15)],  # just expired: the panel marks them
    *[("ACTIVE", h * HOUR_MS, True) for h in (1, 5)],  # < 6 h
    *[("ACTIVE", h * HOUR_MS, True) for h in (8, 20)],  # < 24 h
    *[("ACTIVE", h * HOUR_MS, True) for h in (30, 60)],  # < 3 d
    *[("ACTIVE", d * DAY_MS, True) for d in (4, 6.5)],  # < 7 d
    *[("ACTIVE", d * DAY_MS, True) for d in (30, 90, 365)],  # far away
    *[("ACTIVE", d * DAY_MS, False) for d in (2, 45)],  # no telegram id
    ("DISABLED", 20 * DAY_MS, True),
    ("DISABLED", -3 * DAY_MS, True),
    ("LIMITED", 12 * DAY_MS, True),
    ("LIMITED", 3 * HOUR_MS, True),
    *[("EXPIRED", -d * DAY_MS, True) for d in (1, 3, 30)],
    ("EXPIRED", -2 * DAY_MS, False),
]
