"""The fake Remnawave 3.x panel's state: :class:`RemnawaveState`, in memory and thread-safe, answers
``/api`` calls as CONTRACTS.md (and where it differs, the real 3.3.2 source) says.

It is transport-free: the HTTP layer (:mod:`sandbox.remnawave.app`) hands :meth:`RemnawaveState.handle`
the method, path, query, JSON body and headers and writes back the :class:`RwReply` — or, when it gets
``None``, closes the connection without any answer (what the real panel does when the proxy headers
are missing, and what the ``down`` fault emulates). Around the routes it keeps the proxy-header check,
tokens and scopes, faults, the call log and counters; the admin API and tests call its methods.

The panel's own expiry job is emulated lazily: before every call the users whose ``expireAt`` has
passed move from ACTIVE/LIMITED to EXPIRED by consuming a heap of expiry times (no full scan), unless
the ``auto_expire`` fault is off (a lagging panel).
"""

from __future__ import annotations

import http
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode

from sandbox.remnawave import format as fmt
from sandbox.remnawave import seeding
from sandbox.remnawave.calls import CallLog, Request, summarize
from sandbox.remnawave.format import (
    BAD_JSON,
    DEFAULT_TOKEN,
    NODE_STATES,
    USER_STATUSES,
    Invalid,
    PanelError,
    RwReply,
    now_ms,
)
from sandbox.remnawave.guards import Faults, allows, dropped, scope_set, touched_users
from sandbox.remnawave.nodes import advance_timelines, set_state
from sandbox.remnawave.panel import Call, Panel
from sandbox.remnawave.records import UserRecord, node_json, user_json
from sandbox.remnawave.routes import Route, match_route


class RemnawaveState:
    """Everything the fake panel remembers; every public method is thread-safe.

    ``tokens`` maps each accepted API token to its scopes (``None``: all, as ``*``); ``reset`` returns
    to them. The call log keeps the last ``max_calls`` calls.
    """

    def __init__(
        self, tokens: Mapping[str, Iterable[str] | None] | None = None, *, max_calls: int = 200_000
    ) -> None:
        self._lock = threading.Lock()
        self._seed_tokens = {DEFAULT_TOKEN: None} if tokens is None else dict(tokens)
        self._max_calls = max_calls
        self._wake = threading.Event()
        self._generation = 0  # a call that arrived before a reset is not logged after it
        self.reset()

    def reset(self) -> None:
        """Forget users, nodes, faults, added tokens, the call log and counters; wake delayed calls."""
        with self._lock:
            self._generation += 1
            self._panel = Panel()
            self._tokens = {token: scope_set(scopes) for token, scopes in self._seed_tokens.items()}
            self._faults = Faults()
            self._log = CallLog(self._max_calls)
        self.wake_sleepers()

    def wake_sleepers(self) -> None:
        """Release calls sleeping on injected latency (used by reset and on shutdown)."""
        self._wake.set()
        self._wake = threading.Event()

    def add_token(self, token: str, scopes: Iterable[str] | None = None) -> None:
        """Accept ``token`` from now on, with ``scopes`` (``users``, ``nodes:read``, ...; None: all)."""
        with self._lock:
            self._tokens[token] = scope_set(scopes)

    def set_faults(self, **settings: Any) -> None:
        """Change the named :class:`Faults` fields, leaving the others as they are."""
        unknown = set(settings) - set(vars(Faults()))
        if unknown:
            raise ValueError(f"unknown fault settings: {sorted(unknown)}")
        with self._lock:
            for name, value in settings.items():
                setattr(self._faults, name, value)
            self._panel.version = self._faults.version
        if "latency_ms" in settings:
            self.wake_sleepers()

    def faults(self) -> dict[str, Any]:
        """The current fault settings (counts show what is left)."""
        with self._lock:
            found = dict(vars(self._faults))
        found["failing_users"] = sorted(found["failing_users"])
        return found

    # --- seeding (the admin API and the demo call these) ---

    def seed_users(self, users: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Add users from partial wire-format fields (defaults for the rest); ids follow the last."""
        with self._lock:
            store = self._panel.users
            return self._added(seeding.users_from_fields(users, store.next_id, now_ms()))

    def generate_users(self, count: int, **spec: Any) -> dict[str, Any]:
        """Add ``count`` generated users (see :func:`sandbox.remnawave.seeding.generated_users`)."""
        with self._lock:
            first_id = self._panel.users.next_id
            return self._added(seeding.generated_users(first_id, count, now=now_ms(), **spec))

    def _added(self, records: Sequence[UserRecord]) -> dict[str, Any]:
        store = self._panel.users
        names = [u.username for u in records]
        taken = [name for name in names if name in store.by_username]
        if taken or len(set(names)) != len(names):
            raise ValueError(f"username already taken or repeated: {(taken or names)[0]!r}")
        if records and records[0].id < store.next_id:
            raise ValueError(f"ids must be above the last one ({store.next_id - 1})")
        store.add_many(records)
        first, last = (records[0].id, records[-1].id) if records else (None, None)
        return {"ok": True, "created": len(records), "first_id": first, "last_id": last}

    def add_nodes(self, nodes: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Add nodes from ``{"name", "countryCode", "state", "trafficUsedBytes"?, "usersOnline"?}``."""
        with self._lock:
            first_id = 1 + max((n.id for n in self._panel.nodes.values()), default=0)
            records = seeding.nodes_from_fields(nodes, first_id, now_ms())
            self._panel.nodes.update((n.uuid, n) for n in records)
        return {"ok": True, "created": len(records), "uuids": [n.uuid for n in records]}

    def set_node(
        self,
        node_uuid: str,
        *,
        state: str | None = None,
        traffic_used_bytes: int | None = None,
        users_online: int | None = None,
        country_code: str | None = None,
        broken_config: bool | None = None,
    ) -> dict[str, Any]:
        """Change a node's state (online/offline/connecting/disabled), traffic, online users, country
        code, or whether its ``configProfile`` is served broken."""
        if state is not None and state not in NODE_STATES:
            raise ValueError(f"state must be one of {list(NODE_STATES)}")
        with self._lock:
            node = self._panel.nodes.get(node_uuid.lower())
            if node is None:
                raise ValueError(f"no node {node_uuid}")
            now = now_ms()
            if state is not None:
                set_state(node, state, now)
            if traffic_used_bytes is not None:
                node.traffic_used_bytes = traffic_used_bytes
            if users_online is not None:
                node.users_online = users_online
            if country_code is not None:
                node.country_code = country_code
            if broken_config is not None:
                node.broken_config = broken_config
            return node_json(node, now)

    # --- reading the state (tests and the admin API) ---

    def user(self, user_id: int) -> dict[str, Any] | None:
        """A user's current object (after the expiry job), without auth; None if there is none."""
        with self._lock:
            self._expire_due()
            u = self._panel.users.records.get(user_id)
            return None if u is None else user_json(u)

    def user_counts(self) -> dict[str, Any]:
        """``{"total", "by_status"}`` after the expiry job."""
        with self._lock:
            self._expire_due()
            counts = {status: self._panel.users.counts[status] for status in USER_STATUSES}
        return {"total": sum(counts.values()), "by_status": counts}

    def nodes(self) -> list[dict[str, Any]]:
        """Every node's current object, in id order."""
        with self._lock:
            self._expire_due()
            now = now_ms()
            return [node_json(n, now) for n in self._panel.nodes_by_id()]

    def calls(self, since: int = 0, path_prefix: str | None = None) -> list[dict[str, Any]]:
        """Every ``/api`` call received after ``since`` (a ``seq``), oldest first."""
        with self._lock:
            entries = list(self._log.entries)
        return [
            e
            for e in entries
            if e["seq"] > since and (path_prefix is None or e["path"].startswith(path_prefix))
        ]

    def stats(self) -> dict[str, Any]:
        """``{"total", "by_status", "by_route": {"GET /api/users/{id}": {"200": n}}}``."""
        with self._lock:
            counts = list(self._log.counts.items())
        return summarize(counts)

    # --- the transport-free entry point ---

    def handle(
        self,
        method: str,
        path: str,
        query: Mapping[str, str] | str = "",
        body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> RwReply | None:
        """Answer one ``/api`` call as the panel would; ``None`` means: close the connection without
        any answer. ``body`` is the parsed JSON (``BAD_JSON`` when it did not parse)."""
        arrived, generation = time.time(), self._generation
        query_text, params = _query(query)
        head = {name.lower(): value for name, value in (headers or {}).items()}
        request = Request(method.upper(), path, query_text, head, body, arrived)
        route, route_params = match_route(request.method, path)
        if dropped(self._faults, head):
            self._note(request, route, "dropped", generation)
            return None
        self._sleep_latency()
        reply = self._answer(request, route, Call(route_params or {}, params, body, request.full_path))
        self._note(request, route, str(reply.status), generation)
        return reply

    def _sleep_latency(self) -> None:
        latency_ms = self._faults.latency_ms
        if latency_ms:
            self._wake.wait(latency_ms / 1000)

    def _answer(self, request: Request, route: Route | None, call: Call) -> RwReply:
        refused = self._refused(request, route)
        if refused is not None or route is None:
            return refused or fmt.route_not_found(request.method, request.path)
        with self._lock:
            self._expire_due()
            try:
                self._fail_touched(route, call)
                return route.answer(self._panel, call)
            except PanelError as e:
                return e.reply(request.full_path)
            except Invalid as e:
                return e.reply()

    def _fail_touched(self, route: Route, call: Call) -> None:
        """The ``failing_users`` fault: a write touching one of them fails whole (lock held)."""
        failing = self._faults.failing_users
        if not failing:
            return
        touched = touched_users(route, call.params, call.body)
        if touched is None or touched & failing:
            raise PanelError(self._faults.failing_users_code)

    def _refused(self, request: Request, route: Route | None) -> RwReply | None:
        """What answers before the route does: body parser, injected 5xx, unknown route, guards."""
        if request.body is BAD_JSON:
            return fmt.BAD_JSON_REPLY
        injected = self._injected_error()
        if injected is not None or route is None:
            return injected
        return self._denied(request.headers, route)

    def _injected_error(self) -> RwReply | None:
        with self._lock:
            faults = self._faults
            if faults.server_error_count <= 0:
                return None
            faults.server_error_count -= 1
            status = faults.server_error_status
        return RwReply(status, f"{status} {http.HTTPStatus(status).phrase}", plain=True)

    def _denied(self, head: Mapping[str, str], route: Route) -> RwReply | None:
        scheme, _, token = head.get("authorization", "").partition(" ")
        with self._lock:
            known = scheme.lower() == "bearer" and token in self._tokens and not self._faults.token_rejected
            scopes = self._tokens.get(token)
        if not known:
            return fmt.UNAUTHORIZED
        return None if allows(scopes, route) else fmt.FORBIDDEN

    def _expire_due(self) -> None:
        """Bring the panel up to now: users past their expiry (unless ``auto_expire`` is off) and the
        node timeline steps that are due."""
        now = now_ms()
        if self._faults.auto_expire:
            self._panel.users.expire_due(now)
        advance_timelines(self._panel, now)

    def set_timeline(self, node_uuid: str, steps: Sequence[tuple[float, str]]) -> dict[str, Any]:
        """Replace the node's timeline with ``steps`` — ``(seconds from now, state)`` — (none: clear
        it); the steps, in absolute unix ms."""
        for _, state in steps:
            if state not in NODE_STATES:
                raise ValueError(f"state must be one of {list(NODE_STATES)}, not {state!r}")
        with self._lock:
            uuid = node_uuid.lower()
            if uuid not in self._panel.nodes:
                raise ValueError(f"no node {node_uuid}")
            now = now_ms()
            timeline = sorted((now + round(offset_s * 1000), state) for offset_s, state in steps)
            if timeline:
                self._panel.timelines[uuid] = timeline
            else:
                self._panel.timelines.pop(uuid, None)
            advance_timelines(self._panel, now)
            pending = self._panel.timelines.get(uuid, [])
        return {"node": uuid, "steps": [{"at_ms": at, "state": state} for at, state in pending]}

    def _note(self, request: Request, route: Route | None, status: str, generation: int) -> None:
        with self._lock:
            if generation != self._generation:
                return  # it arrived before a reset (a test's late call must not show in the next test)
            self._log.add(request, route.template if route else None, status)


def _query(query: Mapping[str, str] | str) -> tuple[str, dict[str, str]]:
    if isinstance(query, str):
        return query, dict(parse_qsl(query, keep_blank_values=True))
    params = {name: str(value) for name, value in query.items()}
    return urlencode(params), params
