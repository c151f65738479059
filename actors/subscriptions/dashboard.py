"""The subscriptions domain's dashboard page and overview tile (registered in
:mod:`actors.subscriptions`): what its jobs did today (since 00:00 UTC).

* ``GET /subscriptions`` (refreshes every 10 s) — the messages the jobs queued today, by kind and
  delivery status: expiry reminders per bracket (``check_expiring_subscriptions``), notices to users
  switched off (``disable_expired_users``), auto-renew invoices (``auto_renew_subscriptions``); users
  switched off today and disable actions a killed run left open; the safety valve (held today or
  not, its last trip and message); today's auto-renew payments by outcome;
* tile ``subscriptions`` — red when the valve held today, or when a disable action has been open
  longer than :data:`STUCK_AFTER` (runs every 15 min finish them: an older one means they fail).

Everything is read from what the jobs already write:

* reminders and notices — their ``notification_queue`` rows created today, by ``notification_type``;
  a reminder's bracket is read from its text (each bracket's text starts differently,
  :func:`actors.subscriptions.texts.reminder`);
* users switched off — ``audit_logs`` rows ``subscription_disabled`` created today (one per user,
  written with the disable); open actions — ``subscription_actions`` not done (its partial index);
* the valve — the admin alert it raises (``incident:subscriptions.disable_valve`` in the alert
  history, ``cybervpn:alerts:fp:<fingerprint>``: last and first time, count, latest text; kept
  ALERT_HISTORY_DAYS, written only while Redis is up);
* auto-renew — ``payments`` created today whose (user, plan) is an ``auto_renew_settings`` row:
  the job's payments (a payment a user made by hand the same day for the same plan would be counted
  too: the table records no origin), with their activation state.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Blueprint
from sqlalchemy import text
from sqlalchemy.orm import Session

from actors.subscriptions import texts
from actors.subscriptions.auto_renew import NOTIFICATION_TYPE as AUTO_RENEW_TYPE
from actors.subscriptions.check_expiring import BRACKETS
from actors.subscriptions.check_expiring import NOTIFICATION_TYPE as REMINDER_TYPE
from actors.subscriptions.disable_expired import AUDIT_ACTION, KIND
from actors.subscriptions.disable_expired import NOTIFICATION_TYPE as DISABLED_TYPE
from worker_app.days import day_start
from worker_app.redis_client import key
from worker_app.runtime import Runtime
from worker_app.web.dashboard import page
from worker_app.web.moments import ago
from worker_app.web.overview import Tile

VALVE_FINGERPRINT = "incident:subscriptions.disable_valve"
"""The alert ``disable_expired`` raises when the valve holds (``AdminAlerts.alert`` prefixes
``incident:`` to its key)."""
STUCK_AFTER = timedelta(hours=1)
BRACKET_NAMES = tuple(name for name, _ in sorted(BRACKETS, key=lambda b: -b[1]))
"""7d, 3d, 24h, 6h: the order a subscription passes them."""
OUTCOMES = ("renewed", "awaiting payment", "no invoice yet", "activating", "in review", "expired", "failed")

_SOME_DAY = datetime(2000, 1, 1, tzinfo=UTC)
_MARKERS = {name: texts.reminder(name, _SOME_DAY, "-").split(" (")[0] for name in BRACKET_NAMES}
"""Each bracket's reminder text up to its date: how its rows are told apart."""
_BRACKET = " ".join(f"WHEN strpos(message, :marker_{n}) = 1 THEN '{n}'" for n in BRACKET_NAMES)
_MESSAGES = text(
    f"""
    SELECT notification_type AS type,
           CASE WHEN notification_type = :reminder THEN CASE {_BRACKET} ELSE 'other' END END AS bracket,
           status, count(*) AS n
    FROM notification_queue
    WHERE created_at >= :start AND notification_type IN (:reminder, :disabled, :auto_renew)
    GROUP BY 1, 2, 3
    """
)
_DISABLED = text("SELECT count(*) FROM audit_logs WHERE action = :action AND created_at >= :start")
_OPEN = text(
    "SELECT count(*) AS n, min(created_at) AS oldest FROM subscription_actions "
    "WHERE kind = :kind AND done_at IS NULL"
)
_AUTO_RENEW = text(
    """
    SELECT p.status, p.external_id IS NOT NULL AS invoiced, a.state, count(*) AS n
    FROM payments p
    JOIN auto_renew_settings s ON s.user_id = p.user_id AND s.plan_id = p.plan_id
    LEFT JOIN payment_activations a ON a.payment_id = p.id
    WHERE p.created_at >= :start
    GROUP BY 1, 2, 3
    """
)


@dataclass
class Today:
    """What the subscriptions jobs did since ``start`` (00:00 UTC)."""

    start: datetime
    messages: dict[str, Counter[str]] = field(default_factory=dict)
    """Row kind (``7d`` … ``6h``, ``disabled``, ``auto_renew``) → status → rows."""
    disabled: int = 0
    open_actions: int = 0
    oldest_open: datetime | None = None
    valve: dict[str, Any] = field(default_factory=dict)
    """The valve alert's history record (empty: it never held in ALERT_HISTORY_DAYS)."""
    auto_renew: Counter[str] = field(default_factory=Counter)

    @property
    def reminders(self) -> int:
        return sum(sum(self.messages.get(name, Counter()).values()) for name in BRACKET_NAMES)

    @property
    def valve_held_today(self) -> bool:
        return bool(self.valve) and self.valve["last_at"] >= self.start.timestamp()

    @property
    def stuck(self) -> bool:
        """A disable action open longer than :data:`STUCK_AFTER`."""
        return self.oldest_open is not None and datetime.now(UTC) - self.oldest_open > STUCK_AFTER


def today(runtime: Runtime, now: float) -> Today:
    """Today's figures (see the module docstring): four indexed queries and one Redis read."""
    found = Today(day_start(now))
    with runtime.database.transaction() as s:
        _read_messages(s, found)
        found.disabled = s.execute(_DISABLED, {"action": AUDIT_ACTION, "start": found.start}).scalar_one()
        opened = s.execute(_OPEN, {"kind": KIND}).one()
        found.open_actions, found.oldest_open = int(opened.n), opened.oldest
        for r in s.execute(_AUTO_RENEW, {"start": found.start}):
            found.auto_renew[_outcome(r.status, r.invoiced, r.state)] += int(r.n)
    found.valve = _valve(runtime.redis.hgetall(key("alerts", "fp", VALVE_FINGERPRINT)))
    return found


def _valve(record: Mapping[Any, Any]) -> dict[str, Any]:
    """The valve alert's history record (:mod:`worker_app.alerts`: times in unix ms) in seconds."""
    if not record:
        return {}
    found: dict[str, Any] = {name: int(record.get(name, 0)) / 1000 for name in ("last_at", "first_at")}
    return {**found, "count": int(record.get("count", 0)), "text": record.get("text", "")}


def _read_messages(s: Session, found: Today) -> None:
    params = {"start": found.start, "reminder": REMINDER_TYPE, "disabled": DISABLED_TYPE,
              "auto_renew": AUTO_RENEW_TYPE, **{f"marker_{n}": m for n, m in _MARKERS.items()}}  # fmt: skip
    kinds = {DISABLED_TYPE: "disabled", AUTO_RENEW_TYPE: "auto_renew"}
    for r in s.execute(_MESSAGES, params):
        kind = r.bracket if r.type == REMINDER_TYPE else kinds[r.type]
        found.messages.setdefault(kind, Counter())[r.status] += int(r.n)


def _outcome(status: str, invoiced: bool, activation: str | None) -> str:
    """An auto-renew payment's outcome as the page names it."""
    if status == "completed":
        return "renewed"
    if status in ("expired", "failed"):
        return status
    if activation == "review":
        return "in review"
    if activation is not None:
        return "activating"
    return "awaiting payment" if invoiced else "no invoice yet"


def valve_line(valve: dict[str, Any]) -> str:
    """The valve's last trip in one line: when, and how many it would have switched off."""
    at = datetime.fromtimestamp(valve["last_at"], UTC)
    _, _, what = str(valve["text"]).partition(": ")
    return f"held at {at:%H:%M} UTC: " + (what.split(", above")[0] if what else "see the alert")[:160]


def add_pages(runtime: Runtime) -> tuple[Blueprint, list[tuple[str, str]]]:
    """``GET /subscriptions`` (see the module docstring)."""
    pages = Blueprint("subscriptions", __name__, template_folder="dashboard_templates")

    @pages.get("/subscriptions")
    def subscriptions() -> str:
        found = today(runtime, time.time())
        rows = [(f"reminder {n}", n) for n in BRACKET_NAMES]
        if "other" in found.messages:
            rows.append(("reminder (text not recognised)", "other"))
        rows += [("switched-off notice", "disabled"), ("auto-renew invoice", "auto_renew")]
        return page("subscriptions/today.html", "Subscriptions today", refresh=10, today=found, rows=rows,
                    outcomes=OUTCOMES, stuck_after_min=int(STUCK_AFTER.total_seconds() // 60))  # fmt: skip

    return pages, [("Subscriptions", ".subscriptions")]


def tiles(runtime: Runtime) -> list[Tile]:
    """The overview's ``subscriptions`` tile."""
    return [_tile(runtime)]


def _tile(runtime: Runtime) -> Tile:
    found = today(runtime, time.time())
    detail = f"{found.reminders} reminders, {sum(found.auto_renew.values())} auto-renew payments today"
    if found.valve_held_today:
        return Tile("subscriptions", "Subscriptions", "valve held today", True, "/subscriptions",
                    valve_line(found.valve))  # fmt: skip
    if found.stuck and found.oldest_open is not None:
        opened = ago(time.time() - found.oldest_open.timestamp())
        return Tile("subscriptions", "Subscriptions", f"{found.open_actions} disables unfinished", True,
                    "/subscriptions", f"the oldest opened {opened}")  # fmt: skip
    value = f"{found.disabled} switched off today"
    return Tile("subscriptions", "Subscriptions", value, False, "/subscriptions", detail)
