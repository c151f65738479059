"""What stands in front of the fake panel's routes: the injected :class:`Faults`, the proxy-header check
(the real panel destroys the socket of a request that did not come through its reverse proxy) and the
token scopes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sandbox.remnawave.format import PANEL_VERSION
from sandbox.remnawave.routes import Route


@dataclass
class Faults:
    """Injected faults and modes; change them with :meth:`RemnawaveState.set_faults`.

    The next ``server_error_count`` ``/api`` calls answer ``server_error_status`` with a plain-text
    body (as the reverse proxy in front of the panel would); every answer waits ``latency_ms``;
    ``token_rejected`` makes every call 401; ``down`` closes every ``/api`` connection unanswered;
    ``proxy_check`` (on, as in production) closes it when the proxy headers are wrong;
    ``auto_expire`` off emulates a panel whose expiry job lags; ``version`` is what
    ``/api/system/metadata`` reports. A write that touches one of ``failing_users`` (a bulk call
    naming it, its own action, PATCH or DELETE, a ``bulk/all`` call) fails whole with the panel error
    ``failing_users_code`` and changes nothing, as the panel's one SQL statement per call would.
    """

    server_error_count: int = 0
    server_error_status: int = 502
    latency_ms: int = 0
    token_rejected: bool = False
    down: bool = False
    proxy_check: bool = True
    auto_expire: bool = True
    version: str = PANEL_VERSION
    failing_users: frozenset[int] = frozenset()
    failing_users_code: str = "A001"


def dropped(faults: Faults, head: Mapping[str, str]) -> bool:
    """Whether the call's connection is closed unanswered: the ``down`` fault, or (``proxy_check`` on)
    no ``X-Forwarded-For`` or an ``X-Forwarded-Proto`` other than exactly ``https``."""
    proxied = bool(head.get("x-forwarded-for")) and head.get("x-forwarded-proto") == "https"
    return faults.down or (faults.proxy_check and not proxied)


def touched_users(route: Route, params: Mapping[str, str], body: Any) -> set[int] | None:
    """The user ids a ``users`` write names (``None``: every user, a ``bulk/all`` call)."""
    if route.resource != "users" or route.kind != "write":
        return set()
    if "/bulk/all/" in route.template or route.template.endswith("/delete-by-status"):
        return None
    found: set[int] = set()
    if isinstance(body, dict):
        found.update(i for i in body.get("userIds") or [] if isinstance(i, int))
        if isinstance(body.get("id"), int):
            found.add(body["id"])
    if params.get("id", "").isdigit():
        found.add(int(params["id"]))
    return found


def scope_set(scopes: Iterable[str] | None) -> frozenset[str] | None:
    """A token's scopes as stored (``None``: all)."""
    return None if scopes is None else frozenset(scopes)


def allows(scopes: frozenset[str] | None, route: Route) -> bool:
    """Whether a token's scopes cover ``route``: all (``None`` or ``*``), its resource, ``resource:*``
    or ``resource:read`` / ``resource:write`` as the route reads or writes."""
    if scopes is None or "*" in scopes:
        return True
    wanted = {route.resource, f"{route.resource}:*", f"{route.resource}:{route.kind}"}
    return bool(wanted & scopes)
