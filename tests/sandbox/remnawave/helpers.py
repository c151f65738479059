"""Shared by the fake panel's contract tests: calls over real HTTP (``api`` with the proxy headers and
the default token, ``admin`` for ``/_sandbox/``), seeding helpers and assertions on the panel's error
bodies."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import requests

from sandbox.remnawave.app import RunningRemnawave
from sandbox.remnawave.format import DEFAULT_TOKEN

HEADERS = {
    "Authorization": f"Bearer {DEFAULT_TOKEN}",
    "X-Forwarded-For": "203.0.113.7",
    "X-Forwarded-Proto": "https",
}
ISO_MS = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
USER_FIELDS = {
    "id", "shortUuid", "username", "status", "expireAt", "telegramId", "email", "description", "tag",
    "trafficLimitBytes", "trafficLimitStrategy", "lastTrafficResetAt", "createdAt", "updatedAt",
    "subscriptionUrl", "subRevokedAt", "lastTriggeredThreshold", "trojanPassword", "vlessUuid", "ssPassword",
    "hwidDeviceLimit", "externalSquadUuid", "activeInternalSquads", "userTraffic",
}  # fmt: skip
TRAFFIC_FIELDS = {
    "usedTrafficBytes",
    "lifetimeUsedTrafficBytes",
    "onlineAt",
    "firstConnectedAt",
    "lastConnectedNodeUuid",
}
NODE_FIELDS = {
    "uuid", "id", "name", "address", "port", "proxyUrl", "isConnected", "isDisabled", "isConnecting",
    "lastStatusChange", "lastStatusMessage", "xrayUptime", "usersOnline", "countryCode", "trafficUsedBytes",
    "trafficLimitBytes", "isTrafficTrackingActive", "trafficResetDay", "notifyPercent", "viewPosition",
    "consumptionMultiplier", "nodeConsumptionMultiplier", "tags", "integrationUuids", "ips", "createdAt",
    "updatedAt", "configProfile", "providerUuid", "provider", "activePluginUuid", "system", "versions",
    "note",
}  # fmt: skip
ERROR_FIELDS = {"timestamp", "path", "message", "errorCode"}
SQUAD = "0b3c4d5e-6f70-4a81-9b2c-3d4e5f607182"


def api(panel: RunningRemnawave, method: str, path: str, **kwargs: Any) -> requests.Response:
    headers = kwargs.pop("headers", HEADERS)
    return requests.request(method, f"{panel.url}{path}", headers=headers, timeout=10, **kwargs)


def admin(panel: RunningRemnawave, path: str, body: Any = None, method: str = "POST") -> Any:
    response = requests.request(method, f"{panel.url}/_sandbox/{path}", json=body, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def iso(delta: timedelta) -> str:
    return (datetime.now(UTC) + delta).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def expiry_ms(user: dict[str, Any]) -> float:
    return datetime.fromisoformat(user["expireAt"]).timestamp() * 1000


FUTURE, PAST = timedelta(days=10), timedelta(days=-2)


def seed(panel: RunningRemnawave, *users: dict[str, Any]) -> list[int]:
    """Add users (partial fields) through the admin API; their ids."""
    answer = admin(panel, "users", {"users": list(users)})
    return list(range(answer["first_id"], answer["last_id"] + 1))


def seed_status(panel: RunningRemnawave, status: str, **fields: Any) -> int:
    """One user in ``status`` (EXPIRED ones with a past expiry, the others a future one)."""
    expire = iso(PAST if status == "EXPIRED" else FUTURE)
    return seed(panel, {"status": status, "expireAt": expire, **fields})[0]


def user(panel: RunningRemnawave, user_id: int) -> dict[str, Any]:
    return admin(panel, f"users/{user_id}", method="GET")


def assert_error(response: requests.Response, status: int, code: str, path: str) -> None:
    body = response.json()
    assert (response.status_code, set(body), body["errorCode"], body["path"]) == (
        status,
        ERROR_FIELDS,
        code,
        path,
    )
    assert ISO_MS.fullmatch(body["timestamp"])


def assert_validation_failed(response: requests.Response) -> None:
    body = response.json()
    assert (response.status_code, body["statusCode"], body["message"]) == (400, 400, "Validation failed")
    assert body["errors"] and all({"code", "path", "message"} <= set(e) for e in body["errors"])


def stream(panel: RunningRemnawave, **params: Any) -> dict[str, Any]:
    response = api(panel, "GET", "/api/users/stream", params=params)
    assert response.status_code == 200, response.text
    return response.json()["response"]


def add_nodes(panel: RunningRemnawave, *states: str) -> list[str]:
    """Nodes in these states (4 users online each); their uuids."""
    nodes = [
        {"name": f"n{i}", "countryCode": "DE", "state": s, "usersOnline": 4} for i, s in enumerate(states)
    ]
    uuids: list[str] = admin(panel, "nodes", {"nodes": nodes})["uuids"]
    return uuids
