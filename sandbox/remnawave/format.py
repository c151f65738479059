"""Remnawave 3.x wire format for the sandbox: constants, replies and error bodies, and request
validation with the panel's zod-style issues (one issue per failure), as CONTRACTS.md and the panel's
3.3.2 contract files describe them. Dates are ISO-8601 with milliseconds and ``Z``; the objects
themselves are built in :mod:`sandbox.remnawave.records` and :mod:`sandbox.remnawave.stats`.

Times are kept as integer epoch milliseconds so that the expiry heap, comparisons and JSON building
stay cheap at 100,000 users.
"""

from __future__ import annotations

import hashlib
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

DEFAULT_TOKEN = "sandbox-remnawave-token"
PANEL_VERSION = "3.3.2"
DAY_MS, HOUR_MS, MINUTE_MS = 86_400_000, 3_600_000, 60_000
GIB = 1024**3
USER_STATUSES = ("ACTIVE", "DISABLED", "LIMITED", "EXPIRED")
STRATEGIES = ("NO_RESET", "DAY", "WEEK", "MONTH", "MONTH_ROLLING")
NODE_STATES = ("online", "offline", "connecting", "disabled")
NODE_ACTIONS = ("ENABLE", "DISABLE", "RESTART", "RESET_TRAFFIC")
SUBSCRIPTION_BASE = "https://sub.sandbox.invalid"
PROFILE_UUID = "6f1c5f2e-3b1a-4c55-9d7e-0a1b2c3d4e5f"
DEFAULT_SQUAD = {"uuid": "8d2b2f7a-51c4-4f0e-a3b1-5c6d7e8f9a0b", "name": "Default-Squad"}
INBOUNDS = (  # (uuid, tag, type, network, security, port)
    ("1a7e3c9d-4b2f-4e8a-9c1d-2e3f4a5b6c7d", "VLESS_REALITY", "vless", "tcp", "reality", 443),
    ("2b8f4dae-5c3a-4f9b-8d2e-3f4a5b6c7d8e", "SHADOWSOCKS", "shadowsocks", "tcp", None, 8388),
)
BAD_JSON = object()
"""The body the HTTP layer passes when the request body is not JSON (Express answers 400)."""

ERRORS: dict[str, tuple[int, str]] = {
    "A001": (500, "Server error"),
    "A011": (404, "Node not found"),
    "A019": (400, "User username already exists"),
    "A020": (400, "User short UUID already exists"),
    "A025": (404, "User not found"),
    "A029": (400, "User already disabled"),
    "A030": (400, "User already enabled"),
    "A063": (404, "User with specified params not found"),
    "A056": (500, "Reset user traffic error"),
    "A089": (400, "LIMITED and EXPIRED statuses are not allowed to be set manually."),
    "A149": (400, "Node is disabled"),
}
_USERNAME = re.compile(r"[a-zA-Z0-9_-]{3,36}")
_TAG = re.compile(r"[A-Z0-9_]{1,16}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


@dataclass(frozen=True)
class RwReply:
    """One panel answer: HTTP status, JSON body (``None``: no body at all, as 202/204) and headers."""

    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)
    plain: bool = False
    """The body is plain text (an injected 5xx, as a proxy in front of the panel gives)."""


class PanelError(Exception):
    """A panel error code (A025, ...): ``{"timestamp", "path", "message", "errorCode"}``."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code

    def reply(self, path: str) -> RwReply:
        """The error body for a call to ``path`` (with its query)."""
        status, message = ERRORS[self.code]
        body = {"timestamp": iso_ms(now_ms()), "path": path, "message": message, "errorCode": self.code}
        return RwReply(status, body)


class Invalid(ValueError):
    """A failed zod validation: 400 ``{"statusCode": 400, "message": "Validation failed", "errors"}``.
    A ValueError, so that the admin API answers the same checks with its own 400."""

    def __init__(self, path: Sequence[str | int], code: str, message: str, **details: Any) -> None:
        super().__init__(f"{'.'.join(map(str, path)) or 'body'}: {message}")
        self.issue = {**details, "code": code, "path": list(path), "message": message}

    def reply(self) -> RwReply:
        """The 400 body with this one issue."""
        return RwReply(400, {"statusCode": 400, "message": "Validation failed", "errors": [self.issue]})


UNAUTHORIZED = RwReply(401, {"message": "Unauthorized", "statusCode": 401})
FORBIDDEN = RwReply(403, {"message": "Forbidden resource", "error": "Forbidden", "statusCode": 403})
BAD_JSON_REPLY = RwReply(
    400, {"message": "Unexpected token in JSON", "error": "Bad Request", "statusCode": 400}
)


def route_not_found(method: str, path: str) -> RwReply:
    """NestJS's own 404 for a route the panel does not have (e.g. 2.x's by-telegram-id)."""
    return RwReply(404, {"message": f"Cannot {method} {path}", "error": "Not Found", "statusCode": 404})


def now_ms() -> int:
    """Now as epoch milliseconds."""
    return int(time.time() * 1000)


def iso_ms(ms: int) -> str:
    """``2025-01-17T15:38:45.065Z`` for epoch milliseconds."""
    seconds, millis = divmod(ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def iso_or_none(ms: int | None) -> str | None:
    """``None`` stays ``None``; otherwise :func:`iso_ms`."""
    return None if ms is None else iso_ms(ms)


def human_bytes(count: float) -> str:
    """``"1.23 GiB"``: how the panel's bandwidth summary writes sizes (never parse it)."""
    unit = 0
    while abs(count) >= 1024 and unit < len(_UNITS) - 1:
        count, unit = count / 1024, unit + 1
    return f"{count:.2f} {_UNITS[unit]}" if unit else f"{int(count)} B"


def digest_hex(*parts: object) -> str:
    """96 deterministic hex characters for ids, secrets and uuids derived from ``parts``."""
    return hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=48).hexdigest()


def as_uuid(hex_digits: str) -> str:
    """The first 32 hex digits as a dashed UUID."""
    return str(uuid.UUID(hex_digits[:32]))


# --- validation: one zod-style issue per failure -------------------------------------------------


def expect_object(value: Any, path: Sequence[str | int] = ()) -> Mapping[str, Any]:
    """A JSON object body (a missing body reads as ``{}``)."""
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise _type_error(path, "object", value)
    return value


def _type_error(path: Sequence[str | int], expected: str, value: Any) -> Invalid:
    received = "undefined" if value is None else type(value).__name__
    message = f"Invalid input: expected {expected}, received {received}"
    return Invalid(path, "invalid_type", message, expected=expected)


def _range_error(
    path: Sequence[str | int], origin: str, value: float, lo: float | None, hi: float | None
) -> None:
    if lo is not None and value < lo:
        what = "to have >=" if origin == "array" else ">="
        message = f"Too small: expected {origin} {what}{lo}{' items' if origin == 'array' else ''}"
        raise Invalid(path, "too_small", message, origin=origin, minimum=lo, inclusive=True)
    if hi is not None and value > hi:
        what = "to have <=" if origin == "array" else "<="
        message = f"Too big: expected {origin} {what}{hi}{' items' if origin == 'array' else ''}"
        raise Invalid(path, "too_big", message, origin=origin, maximum=hi, inclusive=True)


def number(
    value: Any, path: Sequence[str | int], *, lo: float | None = None, hi: float | None = None
) -> float:
    """A JSON number (not a boolean) within ``lo``..``hi``."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise _type_error(path, "number", value)
    _range_error(path, "number", value, lo, hi)
    return value


def integer(value: Any, path: Sequence[str | int], *, lo: int | None = None, hi: int | None = None) -> int:
    """A JSON integer (``3.0`` counts) within ``lo``..``hi``."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise _type_error(path, "int", value)
    _range_error(path, "number", value, lo, hi)
    return value


def text(value: Any, path: Sequence[str | int], pattern: re.Pattern[str] | None = None) -> str:
    """A string, matching ``pattern`` in full if one is given."""
    if not isinstance(value, str):
        raise _type_error(path, "string", value)
    if pattern is not None and not pattern.fullmatch(value):
        raise Invalid(path, "invalid_format", "Invalid string: must match pattern", format="regex")
    return value


def choice(value: Any, path: Sequence[str | int], values: Sequence[str]) -> str:
    """One of ``values``."""
    if value not in values:
        options = "|".join(f'"{v}"' for v in values)
        raise Invalid(
            path, "invalid_value", f"Invalid option: expected one of {options}", values=list(values)
        )
    return str(value)


def uuid_text(value: Any, path: Sequence[str | int]) -> str:
    """A UUID string, lower-cased."""
    if not isinstance(value, str) or not _UUID.fullmatch(value):
        raise Invalid(path, "invalid_format", "Invalid UUID", origin="string", format="uuid")
    return value.lower()


def email(value: Any, path: Sequence[str | int]) -> str:
    """An e-mail address."""
    if not isinstance(value, str) or not _EMAIL.fullmatch(value):
        raise Invalid(path, "invalid_format", "Invalid email address", origin="string", format="email")
    return value


def username(value: Any, path: Sequence[str | int]) -> str:
    """A username: 3–36 of ``[a-zA-Z0-9_-]``."""
    return text(value, path, _USERNAME)


def tag(value: Any, path: Sequence[str | int]) -> str:
    """A tag: 1–16 of ``[A-Z0-9_]``."""
    return text(value, path, _TAG)


def date_ms(value: Any, path: Sequence[str | int], *, future: bool = False) -> int:
    """An ISO-8601 datetime (offset or local, local meaning UTC) as epoch ms."""
    try:
        parsed = datetime.fromisoformat(text(value, path))
    except ValueError:
        raise Invalid(
            path, "invalid_format", "Invalid ISO datetime", origin="string", format="datetime"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    ms = int(parsed.timestamp() * 1000)
    if future and ms <= now_ms():
        raise Invalid(path, "custom", "Expiration date cannot be in the past")
    return ms


def day(value: Any, path: Sequence[str | int]) -> str:
    """A ``YYYY-MM-DD`` query date."""
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        raise Invalid(path, "invalid_format", "Invalid ISO date", origin="string", format="date")
    try:
        datetime.strptime(value, "%Y-%m-%d")
    except ValueError:
        raise Invalid(path, "invalid_format", "Invalid ISO date", origin="string", format="date") from None
    return value


def id_list(body: Mapping[str, Any], name: str = "userIds", *, hi: int = 500) -> list[int]:
    """A bulk body's ``userIds``: 1–``hi`` integers."""
    ids = body.get(name)
    if not isinstance(ids, list):
        raise _type_error([name], "array", ids)
    _range_error([name], "array", len(ids), 1, hi)
    return [integer(value, [name, i]) for i, value in enumerate(ids)]


def uuid_list(body: Mapping[str, Any], name: str) -> list[str]:
    """A body's list of at least one UUID."""
    values = body.get(name)
    if not isinstance(values, list):
        raise _type_error([name], "array", values)
    _range_error([name], "array", len(values), 1, None)
    return [uuid_text(value, [name, i]) for i, value in enumerate(values)]
