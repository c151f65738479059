"""The fake panel's call log: every ``/api`` call it received (answered or dropped) with its route and
status, and counts by route template and status — what ``GET /_sandbox/calls`` and
``GET /_sandbox/stats`` show and what tests assert on.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Request:
    """One ``/api`` call as it arrived: upper-case method, path, query text, lower-case headers,
    parsed JSON body, arrival time (unix seconds)."""

    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    body: Any
    arrived: float

    @property
    def full_path(self) -> str:
        """The path with its query string, as the panel's error bodies report it."""
        return f"{self.path}?{self.query}" if self.query else self.path


class CallLog:
    """The last ``max_calls`` calls, numbered by ``seq`` from 1, and counts by (route, status) over all
    of them; not thread-safe (the state's lock is)."""

    def __init__(self, max_calls: int) -> None:
        self.entries: deque[dict[str, Any]] = deque(maxlen=max_calls)
        self.seq = 0
        self.counts: Counter[tuple[str, str]] = Counter()

    def add(self, request: Request, route_template: str | None, status: str) -> None:
        """Log a call answered with ``status`` (a number as text, or ``dropped``)."""
        template = f"{request.method} {route_template or '(no route)'}"
        ids = request.body.get("userIds") if isinstance(request.body, dict) else None
        self.seq += 1
        self.counts[(template, status)] += 1
        self.entries.append(
            {
                "seq": self.seq,
                "method": request.method,
                "path": request.path,
                "query": request.query,
                "route": template,
                "status": status if status == "dropped" else int(status),
                "request_id": request.headers.get("x-request-id"),
                "forwarded_for": request.headers.get("x-forwarded-for"),
                "forwarded_proto": request.headers.get("x-forwarded-proto"),
                "user_ids": len(ids) if isinstance(ids, list) else None,
                "ids": list(ids) if isinstance(ids, list) else None,
                "at": request.arrived,
            }
        )


def summarize(counts: Iterable[tuple[tuple[str, str], int]]) -> dict[str, Any]:
    """``{"total", "by_status", "by_route": {"GET /api/users/{id}": {"200": n}}}`` from the counts."""
    by_status: Counter[str] = Counter()
    by_route: dict[str, Counter[str]] = {}
    for (route, status), n in counts:
        by_status[status] += n
        by_route.setdefault(route, Counter())[status] += n
    return {"total": sum(by_status.values()), "by_status": by_status, "by_route": by_route}
