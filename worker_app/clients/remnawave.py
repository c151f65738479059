"""Remnawave panel API client (3.x), per CONTRACTS.md "Remnawave panel API".

Every call goes through :class:`~worker_app.clients.http.JsonHttpClient` (timeouts, ``X-Request-ID``
= trace id, the token masked in every message), a per-process circuit breaker (a dead panel fails
calls at once, after ``failures`` of them, instead of one timeout each) and a semaphore that bounds
the calls in flight (the panel has no rate limiter of its own: be gentle). Failures are sorted into
the error tree the retry middleware acts on:

* 5xx, connection refused or dropped, timeouts, malformed replies, the breaker open →
  :class:`RemnawaveUnavailable` (transient: retried per the domain's policy). A 5xx that carries the
  panel's own error envelope (``A001``, ``A056``: the panel answered, so it is up) keeps its
  ``error_code`` and does not count towards the breaker. A connection closed
  without any answer names the likely cause: the panel, in production mode, drops every request
  lacking ``X-Forwarded-For`` / ``X-Forwarded-Proto: https`` (REMNAWAVE_PROXY_HEADERS);
* 401, and 403 for a token missing a scope or role → :class:`RemnawaveAuthError` (permanent: a
  configuration error; the message names the scope the route needs);
* A025 / A063 / A011 (no such user or node) → :class:`RemnawaveNotFound` (permanent for that item:
  skip it and count it);
* A029 / A030 (already disabled / enabled) → success: the action is done;
* any other 4xx → :class:`RemnawaveRejected` (permanent: this request can never succeed).

Writes answering 202/204 without a body are success. Full scans go through ``/api/users/stream``
(keyset pages of up to 1,000, a generator: constant memory however many users there are); many-user
writes through the bulk endpoints, at most 500 ids per call. Panel 2.x (uuid ids, ``uuids`` bulk
bodies) is detected from ``/api/system/metadata`` and refused with a clear error: only 3.x is
supported.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from worker_app.clients.breaker import BreakerConfig, CircuitBreaker
from worker_app.clients.http import JsonHttpClient, JsonReply
from worker_app.errors import ConfigurationError, PermanentError, UpstreamUnavailable, WorkerError
from worker_app.lazy import created_once

BULK_MAX_IDS = 500
"""Ids per bulk call (the panel's limit)."""
STREAM_MAX_PAGE = 1000
"""Users per ``/api/users/stream`` page (the panel's limit)."""
REQUIRED_SCOPES = ("users", "nodes", "system", "bandwidth-stats", "config-profiles", "hosts")
"""The API token scopes the worker needs (3.x tokens are scoped)."""
ALREADY_DONE = frozenset({"A029", "A030"})
NOT_FOUND = frozenset({"A025", "A063", "A011"})
USER_STATUSES = ("ACTIVE", "DISABLED", "LIMITED", "EXPIRED")
_DROPPED_HINT = (
    "; the connection was closed without an answer — the panel in production mode drops every request "
    "without X-Forwarded-For and X-Forwarded-Proto: https: point REMNAWAVE_URL at its HTTPS proxy or "
    "set REMNAWAVE_PROXY_HEADERS=true"
)
log = logging.getLogger(__name__)
_ID_SEGMENT = re.compile(r"/(\d+|[0-9a-f]{8}-[0-9a-f-]{27,})(?=/|$)")


class RemnawaveError(WorkerError):
    """Base of every error :class:`RemnawaveClient` raises; ``status`` is the HTTP status (``None``
    when no answer arrived) and ``error_code`` the panel's own code (``A025``), when it gave one."""

    def __init__(self, message: str, *, status: int | None = None, error_code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code


class RemnawaveUnavailable(RemnawaveError, UpstreamUnavailable):
    """The panel did not answer usefully (5xx, connection error, timeout, malformed reply, breaker open)."""


class RemnawaveAuthError(RemnawaveError, PermanentError, ConfigurationError):
    """401 or 403: the API token is wrong or lacks a scope; every call fails until the config is fixed
    (never retried; ``worker-app`` exits 2 with its message)."""


class RemnawaveNotFound(RemnawaveError, PermanentError):
    """No such user or node (A025, A063, A011): skip it."""


class RemnawaveRejected(RemnawaveError, PermanentError):
    """The panel refused this request (a 4xx other than the above): it can never succeed as sent."""


@dataclass(frozen=True, slots=True)
class User:
    """The fields of a panel user the worker reads (the full object is in ``raw``)."""

    id: int
    username: str
    status: str
    expire_at: datetime
    telegram_id: int | None
    traffic_limit_strategy: str
    used_traffic_bytes: int
    last_traffic_reset_at: datetime | None
    raw: Mapping[str, Any]

    @classmethod
    def from_json(cls, data: Any) -> User:
        """Parse one user object; :class:`RemnawaveUnavailable` when it does not fit the contract."""
        try:
            traffic = data.get("userTraffic") or {}
            return cls(
                id=_int(data["id"]),
                username=str(data["username"]),
                status=str(data["status"]),
                expire_at=_when(data["expireAt"]),
                telegram_id=None if data.get("telegramId") is None else _int(data["telegramId"]),
                traffic_limit_strategy=str(data.get("trafficLimitStrategy") or "NO_RESET"),
                used_traffic_bytes=_int(traffic.get("usedTrafficBytes") or 0),
                last_traffic_reset_at=_when_or_none(data.get("lastTrafficResetAt")),
                raw=data,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise _malformed("user", data, e) from e


@dataclass(frozen=True, slots=True)
class Node:
    """The fields of a panel node the worker reads (the full object is in ``raw``)."""

    uuid: str
    name: str
    country_code: str
    is_connected: bool
    is_connecting: bool
    is_disabled: bool
    traffic_used_bytes: int
    users_online: int
    raw: Mapping[str, Any]

    @classmethod
    def from_json(cls, data: Any) -> Node:
        """Parse one node object; :class:`RemnawaveUnavailable` when it does not fit the contract."""
        try:
            return cls(
                uuid=str(data["uuid"]),
                name=str(data["name"]),
                country_code=str(data.get("countryCode") or ""),
                is_connected=bool(data["isConnected"]),
                is_connecting=bool(data["isConnecting"]),
                is_disabled=bool(data["isDisabled"]),
                traffic_used_bytes=_int(data.get("trafficUsedBytes") or 0),
                users_online=_int(data.get("usersOnline") or 0),
                raw=data,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise _malformed("node", data, e) from e


@dataclass(frozen=True)
class PanelInfo:
    """``/api/system/metadata``: the panel's version (``"3.3.2"``) and major version."""

    version: str
    major: int


class RemnawaveClient:
    """Calls the Remnawave panel API; thread-safe, one pooled session per client.

    ``proxy_headers`` sends ``X-Forwarded-For: 127.0.0.1`` and ``X-Forwarded-Proto: https`` on every
    call (``None``: only for an ``http://`` base, as the official SDK does); ``api_key`` is sent as
    ``X-Api-Key`` for a reverse proxy in front of the panel; ``max_concurrency`` bounds the calls in
    flight from this process.
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout_s: float = 10.0,
        proxy_headers: bool | None = None,
        api_key: str | None = None,
        max_concurrency: int = 8,
        breaker: CircuitBreaker | None = None,
        page_size: int = STREAM_MAX_PAGE,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        if proxy_headers if proxy_headers is not None else base_url.lower().startswith("http://"):
            headers |= {"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "https"}
        if api_key:
            headers["X-Api-Key"] = api_key
        secrets = (token, api_key) if api_key else (token,)
        self._http = JsonHttpClient(
            "remnawave", base_url, timeout_s=timeout_s, headers=headers, secrets=secrets,
            unavailable=_unavailable, pool_maxsize=max_concurrency,
        )  # fmt: skip
        self.breaker = (
            breaker if breaker is not None else CircuitBreaker(BreakerConfig(), service="remnawave")
        )
        self.page_size = max(1, min(page_size, STREAM_MAX_PAGE))
        self._slots = threading.BoundedSemaphore(max_concurrency)
        self._info: PanelInfo | None = None

    def __repr__(self) -> str:
        return f"RemnawaveClient(base_url={self._http.base_url!r})"

    def close(self) -> None:
        """Close the pooled connections."""
        self._http.close()

    # -- system ---------------------------------------------------------------------------------

    def panel_info(self) -> PanelInfo:
        """The panel's version, asked once per client (a 404 means 2.x before 2.5)."""
        if self._info is None:
            try:
                meta = self.call("GET", "/api/system/metadata")
            except RemnawaveRejected as e:
                if e.status != 404:
                    raise
                meta = {"version": "2.x (before 2.5)"}
            version = str(meta.get("version") if isinstance(meta, dict) else "") or "unknown"
            major = int(version.split(".")[0]) if version.split(".")[0].isdigit() else 2
            self._info = PanelInfo(version, major)
        return self._info

    def require_3x(self) -> PanelInfo:
        """The panel's version; :class:`RemnawaveRejected` (permanent) unless it is 3.x or later."""
        info = self.panel_info()
        if info.major < 3:
            raise RemnawaveRejected(
                f"remnawave panel {info.version} is not supported: the worker speaks the 3.x API "
                "(numeric user ids, userIds bulk bodies); upgrade the panel"
            )
        return info

    def system_stats(self) -> dict[str, Any]:
        """``/api/system/stats``: user counts by status, online users, node totals."""
        return _object(self.call("GET", "/api/system/stats"), "system stats")

    def system_health(self) -> dict[str, Any]:
        """``/api/system/health`` (authenticated): the panel's own health probe."""
        return _object(self.call("GET", "/api/system/health"), "system health")

    # -- users ----------------------------------------------------------------------------------

    def user_pages(self, *, page_size: int | None = None, **filters: Any) -> Iterator[list[User]]:
        """Every user matching ``filters`` (``status``, ``telegramId``, ``tag``, ...), a page at a
        time, in id order, through ``/api/users/stream``: one call per page, constant memory. A user
        object that does not fit the contract is skipped with a warning (and counted in
        ``cybervpn_remnawave_malformed_users_total``): one bad record must not stop every run."""
        size = max(1, min(page_size or self.page_size, STREAM_MAX_PAGE))
        params: dict[str, Any] = {k: v for k, v in filters.items() if v is not None} | {"size": size}
        while True:
            page = _object(self.call("GET", "/api/users/stream", params=params), "user stream page")
            users = [u for u in map(_user_or_none, _list(page.get("users"), "users")) if u is not None]
            if users:
                yield users
            if not page.get("hasMore") or page.get("nextCursor") is None:
                return
            params["cursor"] = _next_cursor(page["nextCursor"], params.get("cursor"))

    def stream_users(self, **filters: Any) -> Iterator[User]:
        """Every user matching ``filters``, one at a time (see :meth:`user_pages`)."""
        for page in self.user_pages(**filters):
            yield from page

    def get_user(self, user_id: int) -> User:
        """One user; :class:`RemnawaveNotFound` (A063) when there is none."""
        return User.from_json(self.call("GET", f"/api/users/{int(user_id)}"))

    def user_action(self, user_id: int, action: str, body: Mapping[str, Any] | None = None) -> User | None:
        """``disable``, ``enable``, ``reset-traffic``, ``revoke`` or ``extend`` one user; the user
        afterwards, or ``None`` when it was done already (A029, A030)."""
        result = self.call("POST", f"/api/users/{int(user_id)}/actions/{action}", json=dict(body or {}))
        return None if result is _DONE else User.from_json(result)

    def update_user(self, user_id: int, fields: Mapping[str, Any]) -> User:
        """``PATCH /api/users`` ``{"id": user_id, **fields}``: set fields to absolute values (an
        ``expireAt`` must be in the future; a future ``expireAt`` revives an EXPIRED user). Repeating
        it is harmless, unlike :meth:`extend_user`. :class:`RemnawaveNotFound` (A025) when there is
        no such user."""
        return User.from_json(self.call("PATCH", "/api/users", json={**dict(fields), "id": int(user_id)}))

    def extend_user(self, user_id: int, days: int) -> User:
        """Extend by ``days``: ``expireAt = max(expireAt, now) + days``, and EXPIRED → ACTIVE.
        Relative: calling it twice extends twice (callers make it once per payment)."""
        user = self.user_action(user_id, "extend", {"days": int(days)})
        if user is None:
            raise RemnawaveRejected(f"remnawave extend of user {user_id} answered 'already done'")
        return user

    def bulk_update(self, user_ids: Iterable[int], fields: Mapping[str, Any]) -> int:
        """``POST /api/users/bulk/update`` in calls of ≤ 500 ids; returns the calls made."""
        return self._bulk("/api/users/bulk/update", user_ids, {"fields": dict(fields)})

    def bulk_disable(self, user_ids: Iterable[int]) -> int:
        """Set ``DISABLED`` on every user (users not ACTIVE are left as they are, silently)."""
        return self.bulk_update(user_ids, {"status": "DISABLED"})

    def bulk_reset_traffic(self, user_ids: Iterable[int]) -> int:
        """Reset used traffic to 0 (LIMITED → ACTIVE) in calls of ≤ 500 ids; returns the calls made."""
        return self._bulk("/api/users/bulk/reset-traffic", user_ids, {})

    def bulk_extend(self, user_ids: Iterable[int], days: int) -> int:
        """``expireAt = max(expireAt, now) + days`` for every user (relative!); returns the calls made."""
        return self._bulk("/api/users/bulk/extend-expiration-date", user_ids, {"extendDays": int(days)})

    def _bulk(self, path: str, user_ids: Iterable[int], body: Mapping[str, Any]) -> int:
        calls = 0
        for chunk in _chunks([int(i) for i in user_ids], BULK_MAX_IDS):
            self.call("POST", path, json={"userIds": chunk, **body})
            calls += 1
        return calls

    # -- nodes and configuration ----------------------------------------------------------------

    def nodes(self) -> list[Node]:
        """Every node (the panel does not paginate them)."""
        return [Node.from_json(n) for n in _list(self.call("GET", "/api/nodes"), "nodes")]

    def inbounds(self) -> list[dict[str, Any]]:
        """``/api/config-profiles/inbounds``: every inbound of every config profile."""
        body = _object(self.call("GET", "/api/config-profiles/inbounds"), "inbounds")
        return _list(body.get("inbounds"), "inbounds")

    def hosts(self) -> list[dict[str, Any]]:
        """``/api/hosts``: every host."""
        return _list(self.call("GET", "/api/hosts"), "hosts")

    # -- transport ------------------------------------------------------------------------------

    def call(
        self, method: str, path: str, *, params: Mapping[str, Any] | None = None, json: Any = None
    ) -> Any:
        """One API call: its ``response`` payload, ``None`` for a reply without a body, a marker
        for "already done" (A029/A030); raises a :class:`RemnawaveError` otherwise."""
        if not self.breaker.allow():
            raise RemnawaveUnavailable(
                f"remnawave {method} {path}: circuit breaker open (the panel failed repeatedly); "
                f"next try in {self.breaker.blocked_for():.1f} s"
            )
        route = _ID_SEGMENT.sub("/{id}", path)
        with self._slots:
            try:
                reply = self._http.request(method, path, params=params, json=json)
            except UpstreamUnavailable as e:
                code = _error_code(e.body)
                if code is None:
                    self.breaker.record_failure(str(e))
                else:  # the panel itself answered, with its error envelope: it is up
                    self.breaker.record_success()
                    if isinstance(e, RemnawaveError):
                        e.error_code = code
                _count(route, getattr(e, "status", None) or "error")
                raise
            except BaseException:
                self.breaker.release_probe()
                raise
        self.breaker.record_success()
        _count(route, reply.status)
        return _payload(method, path, reply)


_DONE: Any = object()
"""What :meth:`RemnawaveClient.call` returns for A029/A030: the action was done already."""


def _payload(method: str, path: str, reply: JsonReply) -> Any:
    body = reply.body
    if reply.status < 300:
        if body is None:
            return None
        if not isinstance(body, dict) or "response" not in body:
            raise _malformed(f"{method} {path} reply", body)
        return body["response"]
    error = _classify(method, path, reply)
    if error is None:
        return _DONE
    raise error


def _classify(method: str, path: str, reply: JsonReply) -> RemnawaveError | None:
    """The error for a 4xx reply; ``None`` for "already done" (A029/A030), which is success."""
    body = reply.body if isinstance(reply.body, dict) else {}
    code = body.get("errorCode")
    code = str(code) if code else None
    text = str(body.get("message") or f"HTTP {reply.status}")
    where = f"remnawave {method} {path}: {reply.status} {text}" + (f" ({code})" if code else "")
    if code in ALREADY_DONE:
        return None
    if reply.status in (408, 429):  # a timeout or a rate limit, likely from a proxy in front of the panel
        return RemnawaveUnavailable(where, status=reply.status, error_code=code)
    if reply.status == 401:
        return RemnawaveAuthError(
            f"{where} — REMNAWAVE_API_TOKEN is not accepted by the panel (or, behind a reverse proxy, "
            "REMNAWAVE_API_KEY by the proxy)",
            status=401,
            error_code=code,
        )
    if reply.status == 403:
        scope = _scope_of(method, path)
        return RemnawaveAuthError(
            f"{where} — the API token lacks the scope {scope} (the worker needs "
            f"{', '.join(REQUIRED_SCOPES)}); give REMNAWAVE_API_TOKEN those scopes",
            status=403,
            error_code=code,
        )
    if code in NOT_FOUND:
        return RemnawaveNotFound(where, status=reply.status, error_code=code)
    return RemnawaveRejected(where, status=reply.status, error_code=code)


def _error_code(body: Any) -> str | None:
    """The panel's ``errorCode`` in an error body (``None``: not the panel's envelope)."""
    code = body.get("errorCode") if isinstance(body, dict) else None
    return str(code) if isinstance(code, str) and code else None


def _scope_of(method: str, path: str) -> str:
    """The token scope a route needs: ``/api/users/...`` → ``users:read`` for a GET."""
    resource = path.removeprefix("/api/").split("/", 1)[0].split("?", 1)[0] or "?"
    return f"{resource}:{'read' if method == 'GET' else 'write'}"


def _unavailable(message: str, status: int | None) -> UpstreamUnavailable:
    dropped = status is None and ("RemoteDisconnected" in message or "Connection aborted" in message)
    return RemnawaveUnavailable(message + (_DROPPED_HINT if dropped else ""), status=status)


def _malformed(what: str, data: Any, error: Exception | None = None) -> RemnawaveUnavailable:
    """The error for a reply that does not fit the contract; it names the record's id and its fields,
    never their values (a user carries passwords and subscription URLs)."""
    cause = (
        f" ({type(error).__name__}{': ' + str(error) if isinstance(error, KeyError) else ''})"
        if error
        else ""
    )
    if isinstance(data, dict):
        shape = f"id {data.get('id', data.get('uuid'))!r}, fields {sorted(map(str, data))[:40]}"
    else:
        shape = f"a {type(data).__name__}"
    return RemnawaveUnavailable(f"remnawave: malformed {what}{cause}: {shape}")


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _malformed(what, value)
    return value


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise _malformed(what, value)
    return value


def _user_or_none(data: Any) -> User | None:
    try:
        return User.from_json(data)
    except RemnawaveUnavailable as e:
        log.warning("%s; skipped", e)
        _malformed_users().inc()
        return None


def _next_cursor(value: Any, previous: Any) -> int:
    """The next page's cursor: the decimal string the panel sent, which must move forward."""
    try:
        cursor = int(value)
    except (TypeError, ValueError):
        raise RemnawaveUnavailable(
            f"remnawave: user stream cursor {str(value)[:40]!r} is not a number"
        ) from None
    if previous is not None and cursor <= int(previous):
        raise RemnawaveUnavailable(f"remnawave: user stream cursor did not advance ({previous} -> {cursor})")
    return cursor


def _chunks(ids: Sequence[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(ids), size):
        yield list(ids[start : start + size])


def _int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not an integer")
    return int(value)


def _when(value: Any) -> datetime:
    parsed = datetime.fromisoformat(str(value))
    if parsed.tzinfo is None:
        raise ValueError(f"{value!r} has no time zone")
    return parsed


def _when_or_none(value: Any) -> datetime | None:
    return None if value is None else _when(value)


@created_once
def _malformed_users() -> Any:
    import prometheus_client as prom

    return prom.Counter(
        "cybervpn_remnawave_malformed_users", "Panel user objects skipped for not fitting the contract.",
        registry=None,
    )  # fmt: skip


@created_once
def _requests_total() -> Any:
    import prometheus_client as prom

    return prom.Counter(
        "cybervpn_remnawave_requests", "Remnawave API calls by route and HTTP status (or error).",
        ("route", "status"), registry=None,
    )  # fmt: skip


def _count(route: str, status: int | str) -> None:
    _requests_total().labels(route, str(status)).inc()
