"""The fake panel's ``/_sandbox/`` admin endpoints: no auth, no proxy-header check; JSON in, JSON out;
a bad request gets 400 ``{"ok": false, "error": "..."}`` (helpers shared with the Telegram side in
:mod:`sandbox.server`).

* ``POST /_sandbox/reset`` — back to the initial state (no users, no nodes, default token).
* ``POST /_sandbox/users`` — ``{"users": [{partial user fields}, ...]}`` or a generator spec
  ``{"count": N, "seed": 1, "statuses": {"ACTIVE": 0.7, ...}, "expire_within_days": [-10, 10],
  "without_telegram_fraction": 0.2, "telegram_id_start": 100000000}`` → ``{"ok", "created",
  "first_id", "last_id"}``. ``GET /_sandbox/users[?status=]`` — counts; ``GET /_sandbox/users/{id}``
  — a user's current object (404 if none).
* ``POST /_sandbox/nodes`` — ``{"nodes": [{"name", "countryCode", "state", "trafficUsedBytes"?,
  "usersOnline"?}]}`` or ``{"count": N}``; ``GET`` lists them; ``POST /_sandbox/nodes/{uuid}/state``
  ``{"state"?: "online|offline|connecting|disabled", "trafficUsedBytes"?, "usersOnline"?,
  "countryCode"?, "brokenConfig"?: bool}`` (``brokenConfig``: the node's ``configProfile`` is served
  with ``activeInbounds: null``, out of contract — a node whose config cannot be read).
* ``POST /_sandbox/nodes/{uuid}/timeline`` — node faults over time, replacing the node's timeline
  (times in seconds from now; ``in_s`` defaults to 0): ``{"outage": {"in_s", "for_s"}}`` (offline,
  then online), ``{"flap": {"in_s", "times", "down_s", "up_s"}}``, ``{"slow_connect": {"in_s",
  "for_s"}}`` (connecting, then online) or ``{"steps": [{"in_s", "state"}, ...]}``; ``{"steps": []}``
  clears it. Answers the steps still to come (``at_ms``, ``state``).
* ``POST /_sandbox/faults`` (``GET`` reads) — ``{"server_error": {"count": N, "status": 502}}``,
  ``{"latency_ms": M}``, ``{"token_rejected": true}``, ``{"down": true}``, ``{"proxy_check": false}``,
  ``{"auto_expire": false}``, ``{"version": "2.8.1"}``, ``{"failing_users": {"ids": [7, 9], "code":
  "A001"}}`` (every write touching one of them fails whole with that panel error); null puts one back
  to its default.
* ``POST /_sandbox/tokens`` ``{"token": "...", "scopes": ["users", "nodes:read"] | null}``.
* ``GET /_sandbox/calls[?since=<seq>&path_prefix=/api/users]`` — every ``/api`` call, oldest first.
* ``GET /_sandbox/stats`` — counts by route template and status.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, request

from sandbox.remnawave.format import ERRORS, PANEL_VERSION, USER_STATUSES
from sandbox.remnawave.seeding import generated_node_fields
from sandbox.remnawave.state import RemnawaveState
from sandbox.server import (
    FaultSettings,
    _admin,
    _admin_body,
    _count,
    _json,
    _latency,
    _server_error,
    faults_endpoint,
)

_VERSION = re.compile(r"\d+\.\d+\.\d+")


def add_admin_routes(app: Flask, state: RemnawaveState) -> None:
    """Register the ``/_sandbox/`` endpoints on ``app``, acting on ``state``."""

    def route(rule: str, action: Callable[..., Any], methods: tuple[str, ...] = ("POST",)) -> None:
        app.add_url_rule(
            f"/_sandbox/{rule}", f"sandbox_{rule}", lambda **kw: _admin(lambda: action(**kw)), methods=methods
        )

    route("reset", state.reset)
    route("users", lambda: _users(state), methods=("GET", "POST"))
    app.add_url_rule("/_sandbox/users/<int:user_id>", "sandbox_user", lambda user_id: _user(state, user_id))
    route("nodes", lambda: _nodes(state), methods=("GET", "POST"))
    route("nodes/<node_uuid>/state", lambda node_uuid: _node_state(state, node_uuid))
    route("nodes/<node_uuid>/timeline", lambda node_uuid: _node_timeline(state, node_uuid))
    route("faults", lambda: _faults(state), methods=("GET", "POST"))
    route("tokens", lambda: _token(state, _admin_body()))
    route("calls", lambda: state.calls(_since(), request.args.get("path_prefix")), methods=("GET",))
    route("stats", state.stats, methods=("GET",))


def _users(state: RemnawaveState) -> dict[str, Any]:
    if request.method == "GET":
        counts = state.user_counts()
        status = request.args.get("status")
        if status is not None:
            if status not in USER_STATUSES:
                raise ValueError(f"status must be one of {list(USER_STATUSES)}")
            counts["count"] = counts["by_status"][status]
        return counts
    body = _admin_body()
    if "users" in body:
        if not isinstance(body["users"], list):
            raise ValueError("users must be a list of objects")
        return state.seed_users(body["users"])
    spec = dict(body)
    count = spec.pop("count", None)
    if count is None:
        raise ValueError('give "users": [...] or a generator spec with "count"')
    return state.generate_users(count, **spec)


def _user(state: RemnawaveState, user_id: int) -> Response:
    user = state.user(user_id)
    return _json({"ok": False, "error": f"no user {user_id}"}, 404) if user is None else _json(user)


def _nodes(state: RemnawaveState) -> Any:
    if request.method == "GET":
        return state.nodes()
    body = _admin_body()
    if "nodes" in body:
        if not isinstance(body["nodes"], list) or not all(isinstance(n, dict) for n in body["nodes"]):
            raise ValueError("nodes must be a list of objects")
        return state.add_nodes(body["nodes"])
    count = _count(body, "count")
    return state.add_nodes(generated_node_fields(count, len(state.nodes()) + 1))


def _node_state(state: RemnawaveState, node_uuid: str) -> dict[str, Any]:
    body = _admin_body()
    traffic, online = body.get("trafficUsedBytes"), body.get("usersOnline")
    country, broken = body.get("countryCode"), body.get("brokenConfig")
    if country is not None and not isinstance(country, str):
        raise ValueError("countryCode must be a string")
    if broken is not None and not isinstance(broken, bool):
        raise ValueError("brokenConfig takes true or false")
    return state.set_node(
        node_uuid,
        state=body.get("state"),
        traffic_used_bytes=None if traffic is None else _count(body, "trafficUsedBytes"),
        users_online=None if online is None else _count(body, "usersOnline"),
        country_code=country,
        broken_config=broken,
    )


def _node_timeline(state: RemnawaveState, node_uuid: str) -> dict[str, Any]:
    body = _admin_body()
    known = ("steps", "outage", "flap", "slow_connect")
    given = [k for k in known if k in body]
    if len(given) != 1 or set(body) - set(known):
        raise ValueError(f"give exactly one of {', '.join(known)}")
    spec = body[given[0]]
    if given[0] == "steps":
        if not isinstance(spec, list) or not all(isinstance(s, dict) for s in spec):
            raise ValueError('steps must be a list of {"in_s": seconds, "state": "..."}')
        return state.set_timeline(node_uuid, [(_seconds(s, "in_s"), str(s.get("state"))) for s in spec])
    if not isinstance(spec, dict):
        raise ValueError(f"{given[0]} must be an object")
    start = _seconds(spec, "in_s", 0.0)
    if given[0] == "outage":
        return state.set_timeline(
            node_uuid, [(start, "offline"), (start + _seconds(spec, "for_s"), "online")]
        )
    if given[0] == "slow_connect":
        return state.set_timeline(
            node_uuid, [(start, "connecting"), (start + _seconds(spec, "for_s"), "online")]
        )
    down_s, up_s, times = _seconds(spec, "down_s"), _seconds(spec, "up_s"), _count(spec, "times")
    steps: list[tuple[float, str]] = []
    for n in range(times):
        at = start + n * (down_s + up_s)
        steps += [(at, "offline"), (at + down_s, "online")]
    return state.set_timeline(node_uuid, steps)


def _seconds(spec: dict[str, Any], name: str, default: float | None = None) -> float:
    value = spec.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"{name} must be a number of seconds >= 0")
    return float(value)


def _token(state: RemnawaveState, body: dict[str, Any]) -> None:
    token, scopes = body.get("token"), body.get("scopes")
    if not isinstance(token, str) or not token.strip() or any(c.isspace() for c in token):
        raise ValueError("token must be a non-empty string without spaces")
    if scopes is not None and (not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes)):
        raise ValueError("scopes must be a list of strings (or null: all)")
    state.add_token(token, scopes)


def _since() -> int:
    since = request.args.get("since", "0")
    if not since.isdigit():
        raise ValueError("since must be a non-negative integer (a seq)")
    return int(since)


def _faults(state: RemnawaveState) -> dict[str, Any]:
    return faults_endpoint(state, _FAULT_PARSERS)


def _flag(name: str, default: bool) -> Callable[[Any], dict[str, Any]]:
    def parse(value: Any) -> dict[str, Any]:
        if value is not None and not isinstance(value, bool):
            raise ValueError(f"{name} takes true or false (or null for the default, {str(default).lower()})")
        return {name: default if value is None else value}

    return parse


def _version(value: Any) -> dict[str, Any]:
    if value is not None and (not isinstance(value, str) or not _VERSION.fullmatch(value)):
        raise ValueError('version must look like "3.3.2" (or null for the default)')
    return {"version": PANEL_VERSION if value is None else value}


def _failing_users(value: Any) -> dict[str, Any]:
    if value is None:
        return {"failing_users": frozenset(), "failing_users_code": "A001"}
    ids = value.get("ids") if isinstance(value, dict) else None
    code = value.get("code", "A001") if isinstance(value, dict) else None
    if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise ValueError('failing_users takes {"ids": [user id, ...], "code"?: "A001"} (or null for none)')
    if code not in ERRORS:
        raise ValueError(f"failing_users.code must be one of {sorted(ERRORS)}")
    return {"failing_users": frozenset(ids), "failing_users_code": code}


_FAULT_PARSERS: dict[str, Callable[[Any], FaultSettings | dict[str, Any]]] = {
    "server_error": _server_error,
    "latency_ms": _latency,
    "token_rejected": _flag("token_rejected", False),
    "down": _flag("down", False),
    "proxy_check": _flag("proxy_check", True),
    "auto_expire": _flag("auto_expire", True),
    "version": _version,
    "failing_users": _failing_users,
}
