"""Panel writes recorded before the bulk call and completed after it (``subscription_actions``).

Remnawave's bulk endpoints answer 202/204 with no body, and a worker can die between the call and
the commit that records it. So a job writing many users does, per batch of ≤ 500:

1. :func:`record` — one ``subscription_actions`` row per user (id derived from kind, user and
   period: a re-run inserts nothing), committed;
2. the bulk call (idempotent on the panel: disabling a disabled user, or resetting a user whose
   ``lastTrafficResetAt`` is this month, is not repeated by the selection);
3. :func:`complete` — in one transaction, mark the rows done and, *for the rows this call marked*,
   queue the user's notice and write the ``audit_logs`` row: exactly once, whoever gets there first.

A run starts with :func:`open_actions`: rows left open by a killed run are checked against the
panel (one ``GET`` each; normally there are none) and completed, or closed as ``renewed`` / ``gone``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from actors.notifications.outbox import Outgoing, queue_notifications
from models import AuditLog, SubscriptionAction
from worker_app.db import Database

NAMESPACE = uuid.UUID("0c9b6a52-3f5e-4d7a-9a43-2f7a1f5c9e80")
"""Namespace of the action ids (uuid5): fixed forever, or re-runs would act twice."""
AUDIT_ACTOR = "worker"


@dataclass(frozen=True)
class Planned:
    """One user's action: ``period`` is the expiry enforced (ISO) or the month (``2026-12``)."""

    user_id: int
    period: str
    telegram_id: int | None


def action_id(kind: str, user_id: int, period: str) -> uuid.UUID:
    """The ``subscription_actions`` id of ``kind`` for ``user_id`` in ``period``."""
    return uuid.uuid5(NAMESPACE, f"{kind}:{user_id}:{period}")


def record(database: Database, kind: str, planned: Sequence[Planned]) -> None:
    """Write the open rows of ``planned`` (those not written before), committed before the call."""
    if not planned:
        return
    rows = [
        {"id": action_id(kind, p.user_id, p.period), "kind": kind, "user_id": p.user_id,
         "period": p.period, "telegram_id": p.telegram_id}
        for p in planned
    ]  # fmt: skip
    with database.transaction() as s:
        s.execute(insert(SubscriptionAction).values(rows).on_conflict_do_nothing(index_elements=["id"]))


_COMPLETE = text(
    """
    UPDATE subscription_actions SET done_at = now(), outcome = :outcome
    WHERE id = ANY(CAST(:ids AS uuid[])) AND done_at IS NULL
    RETURNING user_id, period, telegram_id
    """
)

Notice = Callable[[Planned], Outgoing | None]
"""The notice a completed action sends its user (``None``: none, e.g. no telegram id)."""


def complete(
    database: Database,
    kind: str,
    planned: Sequence[Planned],
    *,
    audit_action: str,
    notice: Notice,
    details: dict[str, Any] | None = None,
) -> int:
    """Mark ``planned`` done; queue the notices and write the audit rows of those marked now (not
    of those another run completed first). Returns how many were marked now."""
    if not planned:
        return 0
    ids = [action_id(kind, p.user_id, p.period) for p in planned]
    with database.transaction() as s:
        marked = [
            Planned(r.user_id, r.period, r.telegram_id)
            for r in s.execute(_COMPLETE, {"ids": ids, "outcome": "done"})
        ]
        notices = [n for n in (notice(p) for p in marked) if n is not None]
        queue_notifications(s, notices)
        _audit(s, audit_action, marked, details or {})
    return len(marked)


def close(database: Database, kind: str, planned: Sequence[Planned], outcome: str) -> int:
    """Close ``planned`` without a notice or an audit row (``renewed``, ``gone``, ``skipped``)."""
    if not planned:
        return 0
    ids = [action_id(kind, p.user_id, p.period) for p in planned]
    with database.transaction() as s:
        return len(list(s.execute(_COMPLETE, {"ids": ids, "outcome": outcome})))


def open_actions(database: Database, kind: str, limit: int = 5000) -> list[Planned]:
    """Rows of ``kind`` a killed run left open, oldest first."""
    query = text(
        "SELECT user_id, period, telegram_id FROM subscription_actions "
        "WHERE kind = :kind AND done_at IS NULL ORDER BY created_at LIMIT :limit"
    )
    with database.transaction() as s:
        return [
            Planned(r.user_id, r.period, r.telegram_id)
            for r in s.execute(query, {"kind": kind, "limit": limit})
        ]


def _audit(s: Session, action: str, marked: Sequence[Planned], details: dict[str, Any]) -> None:
    if marked:
        s.add_all(
            AuditLog(
                actor=AUDIT_ACTOR, action=action, entity_type="user", entity_id=str(p.user_id),
                details={"period": p.period, **details},
            )
            for p in marked
        )  # fmt: skip
