"""The fake Crypto Pay's logs: every ``/api`` call (answered or dropped) with why an error was
answered, and every webhook delivery attempt — what ``GET /_sandbox/calls``, ``/_sandbox/deliveries``
and ``/_sandbox/stats`` show and what tests assert on. Neither holds an app token."""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Call:
    """One ``/api`` call as it arrived: HTTP method, API method name, merged parameters, lower-case
    headers, arrival time (unix seconds), and what is wrong with its body if it did not parse."""

    http_method: str
    method: str
    params: Mapping[str, Any]
    headers: Mapping[str, str]
    arrived: float
    body_error: str | None = None


class Log:
    """The last ``max_entries`` entries, numbered by ``seq`` from 1; not thread-safe (the state's lock is)."""

    def __init__(self, max_entries: int) -> None:
        self.entries: deque[dict[str, Any]] = deque(maxlen=max_entries)
        self.seq = 0

    def add(self, entry: dict[str, Any]) -> dict[str, Any]:
        """Number ``entry``, keep it and return it."""
        self.seq += 1
        entry = {"seq": self.seq, **entry}
        self.entries.append(entry)
        return entry

    def since(self, seq: int) -> list[dict[str, Any]]:
        """Entries after ``seq``, oldest first."""
        return [e for e in self.entries if e["seq"] > seq]


class CallLog(Log):
    """The ``/api`` calls, and counts by (method, status) over all of them."""

    def __init__(self, max_entries: int) -> None:
        super().__init__(max_entries)
        self.counts: Counter[tuple[str, str]] = Counter()

    def note(
        self, call: Call, status: str, error: str | None, detail: str | None, token_known: bool | None
    ) -> None:
        """Log a call answered with ``status`` (a number as text, or ``dropped``)."""
        self.counts[(call.method, status)] += 1
        self.add(
            {
                "http_method": call.http_method,
                "method": call.method,
                "params": dict(call.params),
                "content_type": call.headers.get("content-type"),
                "status": status if status == "dropped" else int(status),
                "error": error,
                "detail": detail,
                "token_known": token_known,
                "request_id": call.headers.get("x-request-id"),
                "at": call.arrived,
            }
        )

    def stats(self) -> dict[str, Any]:
        """``{"total", "by_status", "by_method": {"createInvoice": {"200": n}}}``."""
        by_status: Counter[str] = Counter()
        by_method: dict[str, Counter[str]] = {}
        for (method, status), n in self.counts.items():
            by_status[status] += n
            by_method.setdefault(method, Counter())[status] += n
        return {"total": sum(by_status.values()), "by_status": by_status, "by_method": by_method}
