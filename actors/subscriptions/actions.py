"""Panel writes recorded before the bulk call and completed after it (``subscription_actions``).

Remnawave's bulk endpoints answer 202/204 with no body, and a worker can die between the call and
the commit that records it. So a job writing many users does, per batch of ≤ 500:

1. :func:`record` — one ``subscription_actions`` row per user (id derived from kind, user and
   period: a re-run inserts nothing), committed;
2. :func:`act` — in one transaction: lock the batch's rows that are still open (``FOR UPDATE``: a
   concurrent run waits, then finds them done; a renewal may have closed some), make the bulk call
   for those users only, mark them done and queue each user's notice and ``audit_logs`` row:
   exactly once, whoever gets there first. A row closed already (done before, or ``renewed``) is
   never acted on again, so an admin who re-enables a user keeps that decision until the expiry
   changes.

A run starts with :func:`open_actions`: rows left open by a killed run are checked against the
panel (one ``GET`` each; normally there are none) and completed, or closed as ``renewed`` / ``gone``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from actors.notifications.outbox import Outgoing, queue_notifications
from actors.subscriptions.report import RunReport
from models import AuditLog, SubscriptionAction
from worker_app.clients.remnawave import RemnawaveClient, RemnawaveNotFound, User
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


_LOCK_OPEN = text(
    """
    SELECT id, user_id, period, telegram_id FROM subscription_actions
    WHERE id = ANY(CAST(:ids AS uuid[])) AND done_at IS NULL
    ORDER BY id
    FOR UPDATE
    """
)


def act(
    database: Database,
    kind: str,
    planned: Sequence[Planned],
    call: Callable[[list[int]], int],
    *,
    audit_action: str,
    notice: Notice,
) -> tuple[int, int]:
    """Record ``planned``, then make ``call`` (a bulk write, returning the calls it made) for the
    users whose rows are still open, and complete them — see the module docstring. Returns
    (users acted on, calls made)."""
    if not planned:
        return 0, 0
    record(database, kind, planned)
    ids = [action_id(kind, p.user_id, p.period) for p in planned]
    with database.transaction() as s:
        rows = s.execute(_LOCK_OPEN, {"ids": ids}).all()
        if not rows:
            return 0, 0
        calls = call([r.user_id for r in rows])
        marked = [
            Planned(r.user_id, r.period, r.telegram_id)
            for r in s.execute(_COMPLETE, {"ids": [r.id for r in rows], "outcome": "done"})
        ]
        queue_notifications(s, [n for n in (notice(p) for p in marked) if n is not None])
        _audit(s, audit_action, marked, {})
    return len(marked), calls


_HOLD = text(
    """
    INSERT INTO subscription_actions (id, kind, user_id, period, done_at, outcome)
    VALUES (:id, :kind, :user_id, :period, now(), :outcome)
    ON CONFLICT (id) DO UPDATE
        SET done_at = coalesce(subscription_actions.done_at, now()),
            outcome = coalesce(subscription_actions.outcome, excluded.outcome)
    RETURNING outcome
    """
)


def hold_off(database: Database, kind: str, user_id: int, period: str, outcome: str) -> str:
    """Make sure no run acts on (kind, user, period) from now on, closing its row as ``outcome``
    (waiting for a run that holds it in :func:`act`); the row's outcome: ``done`` when a run had
    acted already, else ``outcome``."""
    params = {"id": action_id(kind, user_id, period), "kind": kind, "user_id": user_id, "period": period,
              "outcome": outcome}  # fmt: skip
    with database.transaction() as s:
        return str(s.execute(_HOLD, params).scalar_one())


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


def still_open(
    client: RemnawaveClient, database: Database, kind: str, report: RunReport
) -> Iterator[tuple[Planned, User]]:
    """Each action of ``kind`` a killed run left open, with its user as the panel has it now (one
    ``GET`` each); those of users deleted since are closed ``gone`` and counted ``not_found``."""
    for planned in open_actions(database, kind):
        try:
            user = client.get_user(planned.user_id)
        except RemnawaveNotFound:
            report.add("not_found", close(database, kind, [planned], "gone"))
            continue
        yield planned, user


def _audit(s: Session, action: str, marked: Sequence[Planned], details: dict[str, Any]) -> None:
    if marked:
        s.add_all(
            AuditLog(
                actor=AUDIT_ACTOR, action=action, entity_type="user", entity_id=str(p.user_id),
                details={"period": p.period, **details},
            )
            for p in marked
        )  # fmt: skip
