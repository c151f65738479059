"""The panel's data: :class:`Users` (records and the indexes the routes need; every status change goes
through it, so the counts and the expiry heap stay right), nodes, and :class:`Call`, what a route's
answer function receives. Nothing here is thread-safe: :class:`sandbox.remnawave.state.RemnawaveState`
holds the lock around every use.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sandbox.remnawave.format import PANEL_VERSION, USER_STATUSES, PanelError, RwReply, now_ms
from sandbox.remnawave.records import NodeRecord, UserRecord

_LIVE = ("ACTIVE", "LIMITED")  # statuses the panel's expiry job turns into EXPIRED


class Users:
    """Every user by id, with the indexes the routes need; not thread-safe (the state's lock is)."""

    def __init__(self) -> None:
        self.records: dict[int, UserRecord] = {}
        self.ids: list[int] = []  # ascending: ids are handed out in order
        self.by_username: dict[str, int] = {}
        self.by_short_uuid: dict[str, int] = {}
        self.by_telegram: dict[int, set[int]] = {}
        self.counts: Counter[str] = Counter({status: 0 for status in USER_STATUSES})
        self.next_id = 1
        self._expiry: list[tuple[int, int]] = []  # (expire_ms, id); stale entries are skipped
        self._revisions: Counter[int] = Counter()  # revoke count per id, for new secrets

    def add_many(self, records: Sequence[UserRecord]) -> None:
        """Add records whose ids are above every existing one (already checked by the caller)."""
        for u in records:
            if not u.short_uuid:
                u.new_secrets(0)
            self.records[u.id] = u
            self.by_username[u.username] = u.id
            self.by_short_uuid[u.short_uuid] = u.id
            if u.telegram_id is not None:
                self.by_telegram.setdefault(u.telegram_id, set()).add(u.id)
            self.counts[u.status] += 1
        self.ids.extend(u.id for u in records)
        if records:
            self.next_id = max(self.next_id, records[-1].id + 1)
        self._expiry.extend((u.expire_ms, u.id) for u in records if u.status in _LIVE)
        heapq.heapify(self._expiry)

    def remove(self, ids: Iterable[int]) -> None:
        """Forget the users with these ids (unknown ids are ignored)."""
        gone = {i for i in ids if i in self.records}
        for i in gone:
            u = self.records.pop(i)
            self.by_username.pop(u.username, None)
            self.by_short_uuid.pop(u.short_uuid, None)
            self.set_telegram(u, None)
            self.counts[u.status] -= 1
        if len(gone) > 64:  # one pass beats many list deletions
            self.ids = [i for i in self.ids if i not in gone]
        else:
            for i in gone:
                del self.ids[bisect_left(self.ids, i)]

    def get(self, user_id: int, code: str) -> UserRecord:
        """The user, or the panel error ``code`` (A063 for lookups, A025 for actions)."""
        u = self.records.get(user_id)
        if u is None:
            raise PanelError(code)
        return u

    def after(self, cursor: int) -> Iterator[UserRecord]:
        """Users with an id above ``cursor``, ascending."""
        ids = self.ids
        for position in range(bisect_right(ids, cursor), len(ids)):
            yield self.records[ids[position]]

    def set_status(self, u: UserRecord, status: str, now: int) -> None:
        """Change the status, keeping the counts and, for ACTIVE/LIMITED, the expiry heap right."""
        if u.status != status:
            self.counts[u.status] -= 1
            self.counts[status] += 1
            u.status = status
            if status in _LIVE:
                heapq.heappush(self._expiry, (u.expire_ms, u.id))
        u.updated_ms = now

    def set_expire(self, u: UserRecord, expire_ms: int, now: int) -> None:
        """Change ``expireAt`` (a live user's new expiry goes on the heap)."""
        u.expire_ms, u.updated_ms = expire_ms, now
        if u.status in _LIVE:
            heapq.heappush(self._expiry, (expire_ms, u.id))

    def set_telegram(self, u: UserRecord, telegram_id: int | None) -> None:
        """Change the telegram id and its index."""
        if u.telegram_id is not None:
            self.by_telegram.get(u.telegram_id, set()).discard(u.id)
        u.telegram_id = telegram_id
        if telegram_id is not None and u.id in self.records:
            self.by_telegram.setdefault(telegram_id, set()).add(u.id)

    def revoke(self, u: UserRecord, short_uuid: str | None, *, passwords_only: bool, now: int) -> None:
        """New secrets; unless ``passwords_only``, a new shortUuid (``short_uuid`` or derived) too."""
        self._revisions[u.id] += 1
        old_short = u.short_uuid
        u.new_secrets(self._revisions[u.id], passwords_only=passwords_only)
        if not passwords_only:
            u.short_uuid = short_uuid or u.short_uuid
            del self.by_short_uuid[old_short]
            self.by_short_uuid[u.short_uuid] = u.id
            u.sub_revoked_ms = now
        u.updated_ms = now

    def expire_due(self, now: int) -> None:
        """The panel's expiry job: ACTIVE/LIMITED users whose ``expireAt`` has passed become EXPIRED."""
        heap = self._expiry
        while heap and heap[0][0] <= now:
            expire_ms, user_id = heapq.heappop(heap)
            u = self.records.get(user_id)
            if u is not None and u.expire_ms == expire_ms and u.status in _LIVE:
                self.set_status(u, "EXPIRED", now)


@dataclass
class Call:
    """One routed call as a handler sees it: path parameters, query, JSON body, path with query."""

    params: dict[str, str]
    query: dict[str, str]
    body: Any
    path: str
    now: int = field(default_factory=now_ms)


class Panel:
    """The panel's data (users, nodes, start time, reported version); the routes' answers are the
    functions of :mod:`sandbox.remnawave.users`, :mod:`~sandbox.remnawave.bulk` and
    :mod:`~sandbox.remnawave.nodes`, each taking ``(panel, call)``."""

    def __init__(self) -> None:
        self.users = Users()
        self.nodes: dict[str, NodeRecord] = {}
        self.timelines: dict[str, list[tuple[int, str]]] = {}
        """Per node uuid: ``(at ms, state)`` steps still to come (see :func:`nodes.advance_timelines`)."""
        self.started_ms = now_ms()
        self.version = PANEL_VERSION

    def nodes_by_id(self) -> list[NodeRecord]:
        """Every node in id order (creation order), as the panel lists them."""
        return sorted(self.nodes.values(), key=lambda n: n.id)


def ok(response: Any) -> RwReply:
    """200 with the panel's ``{"response": ...}`` envelope."""
    return RwReply(200, {"response": response})


def coerce(query: Mapping[str, str], name: str, default: Any) -> Any:
    """A query value as zod's ``z.coerce.number()`` sees it (a non-number stays a string: 400)."""
    if name not in query:
        return default
    try:
        return float(query[name]) if "." in query[name] else int(query[name])
    except ValueError:
        return query[name]
