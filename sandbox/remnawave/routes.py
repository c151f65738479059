"""Every route of the fake panel: its method, path template (``{name}`` segments), the token scope it
needs (resource and ``read``/``write``) and the function that answers it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sandbox.remnawave import bulk, nodes, users
from sandbox.remnawave.format import RwReply
from sandbox.remnawave.panel import Call, Panel


@dataclass(frozen=True)
class Route:
    """A path template (``{name}`` segments), the token scope resource and kind, and its answer."""

    method: str
    template: str
    resource: str
    kind: str
    answer: Callable[[Panel, Call], RwReply]

    def match(self, method: str, segments: Sequence[str]) -> dict[str, str] | None:
        """The path parameters if ``method`` and the path ``segments`` fit, else ``None``."""
        parts = self.template.split("/")
        if method != self.method or len(parts) != len(segments):
            return None
        params: dict[str, str] = {}
        for part, segment in zip(parts, segments, strict=True):
            if part.startswith("{"):
                params[part[1:-1]] = segment
            elif part != segment:
                return None
        return params


def _routes() -> list[Route]:
    table: list[tuple[str, str, str, str, Callable[[Panel, Call], RwReply]]] = [
        ("GET", "/api/users", "users", "read", users.list_users),
        ("GET", "/api/users/stream", "users", "read", users.stream_users),
        ("GET", "/api/users/by-username/{username}", "users", "read", users.user_by_username),
        ("GET", "/api/users/by-short-uuid/{shortUuid}", "users", "read", users.user_by_short_uuid),
        ("GET", "/api/users/{id}", "users", "read", users.get_user),
        ("POST", "/api/users", "users", "write", users.create_user),
        ("PATCH", "/api/users", "users", "write", users.update_user),
        ("POST", "/api/users/resolve", "users", "read", users.resolve_user),
        ("DELETE", "/api/users/{id}", "users", "write", users.delete_user),
        ("POST", "/api/users/{id}/actions/disable", "users", "write", users.disable_user),
        ("POST", "/api/users/{id}/actions/enable", "users", "write", users.enable_user),
        ("POST", "/api/users/{id}/actions/reset-traffic", "users", "write", users.reset_user_traffic),
        ("POST", "/api/users/{id}/actions/revoke", "users", "write", users.revoke_user),
        ("POST", "/api/users/{id}/actions/extend", "users", "write", users.extend_user),
        ("POST", "/api/users/bulk/update", "users", "write", bulk.bulk_update),
        ("POST", "/api/users/bulk/reset-traffic", "users", "write", bulk.bulk_reset_traffic),
        ("POST", "/api/users/bulk/revoke-subscription", "users", "write", bulk.bulk_revoke),
        ("POST", "/api/users/bulk/delete", "users", "write", bulk.bulk_delete),
        ("POST", "/api/users/bulk/update-squads", "users", "write", bulk.bulk_update_squads),
        ("POST", "/api/users/bulk/extend-expiration-date", "users", "write", bulk.bulk_extend),
        ("POST", "/api/users/bulk/delete-by-status", "users", "write", bulk.bulk_delete_by_status),
        ("POST", "/api/users/bulk/all/update", "users", "write", bulk.bulk_all_update),
        ("POST", "/api/users/bulk/all/reset-traffic", "users", "write", bulk.bulk_all_reset_traffic),
        ("POST", "/api/users/bulk/all/extend-expiration-date", "users", "write", bulk.bulk_all_extend),
        ("GET", "/api/nodes", "nodes", "read", nodes.list_nodes),
        ("POST", "/api/nodes/actions/restart-all", "nodes", "write", nodes.restart_all_nodes),
        ("POST", "/api/nodes/bulk-actions", "nodes", "write", nodes.node_bulk_actions),
        ("GET", "/api/nodes/{uuid}", "nodes", "read", nodes.get_node),
        ("POST", "/api/nodes/{uuid}/actions/enable", "nodes", "write", nodes.enable_node),
        ("POST", "/api/nodes/{uuid}/actions/disable", "nodes", "write", nodes.disable_node),
        ("POST", "/api/nodes/{uuid}/actions/restart", "nodes", "write", nodes.restart_node),
        ("POST", "/api/nodes/{uuid}/actions/reset-traffic", "nodes", "write", nodes.reset_node_traffic),
        ("GET", "/api/system/stats", "system", "read", nodes.system_stats),
        ("GET", "/api/system/stats/bandwidth", "system", "read", nodes.bandwidth_summary),
        ("GET", "/api/system/health", "system", "read", nodes.health),
        ("GET", "/api/system/metadata", "system", "read", nodes.metadata),
        ("GET", "/api/bandwidth-stats/nodes", "bandwidth-stats", "read", nodes.node_bandwidth),
        ("POST", "/api/bandwidth-stats/nodes/usage", "bandwidth-stats", "read", nodes.node_users_usage),
        ("GET", "/api/config-profiles/inbounds", "config-profiles", "read", nodes.inbounds),
        ("GET", "/api/hosts", "hosts", "read", nodes.hosts),
    ]
    return [Route(*row) for row in table]


ROUTES = _routes()
"""Every route, literal templates before the ``{param}`` ones of the same shape (first match wins)."""


def match_route(method: str, path: str) -> tuple[Route, dict[str, str]] | tuple[None, None]:
    """The first route for ``method`` and ``path`` (a trailing slash is ignored), or ``(None, None)``."""
    segments = path.rstrip("/").split("/") if path != "/" else [""]
    for route in ROUTES:
        params = route.match(method, segments)
        if params is not None:
            return route, params
    return None, None
