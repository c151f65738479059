"""Switching off expired subscriptions (PRD 2.2), with a safety valve.

**Who.** ACTIVE users whose ``expireAt`` has passed (PRD 2.2). The panel normally marks them
EXPIRED itself; a lagging panel (or one whose expiry job is off) leaves them running. EXPIRED users
are left as the panel set them: they are off already, and ``extend`` — what a payment does — brings
an EXPIRED user back to ACTIVE on its own, while it leaves a DISABLED user disabled (HAZARDS.md).
LIMITED users are left too: they are cut off by their traffic limit already, the panel's bulk
disable does not apply to them, and the monthly reset skips expired users, so they never come back
on their own. So the users this job disables are exactly the ACTIVE ones the panel did not expire,
and a renewal goes through :func:`actors.subscriptions.renew.renew_user`, which holds this job off
the user, extends, and enables the user if this job had disabled them.

**How.** Bulk ``status: DISABLED`` in calls of ≤ 500 ids, each batch recorded before the call and
completed in the transaction that holds its rows during it (:mod:`actors.subscriptions.actions`):
a run killed mid-way is finished by the next one, every user is disabled once, notified once (with
renewal instructions) and written once to ``audit_logs`` (``action='subscription_disabled'``).

**Safety valve.** If a run would disable more than SUBSCRIPTIONS_DISABLE_MAX_FRACTION of the ACTIVE
users (and more than SUBSCRIPTIONS_DISABLE_VALVE_MIN_USERS), it disables no one and
raises one critical alert: a wrong clock or a panel bug must not switch off the business.
``worker-app subscriptions disable-expired --dry-run`` lists who would be disabled.

**Batch limit.** ``DISABLE_EXPIRED_USERS_BATCH_LIMIT`` caps the users one run disables (the valve
still weighs every expired user); the rest are disabled by the next runs. Users handled before
(an admin re-enabled them) take no room.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import dramatiq

from actors.notifications.outbox import Outgoing
from actors.subscriptions import actions, texts
from actors.subscriptions.actions import Planned
from actors.subscriptions.report import RunReport
from worker_app.alerts import AdminAlerts
from worker_app.clients.remnawave import BULK_MAX_IDS, RemnawaveClient, User
from worker_app.db import Database
from worker_app.runtime import get_runtime

QUEUE = "subscriptions"
JOB = "disable_expired_users"
KIND = "disable"
AUDIT_ACTION = "subscription_disabled"
NOTIFICATION_TYPE = "subscription_disabled"
DISABLE_STATUSES = frozenset({"ACTIVE"})
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Valve:
    """The safety valve's limits (SUBSCRIPTIONS_DISABLE_MAX_FRACTION / _VALVE_MIN_USERS)."""

    max_fraction: float = 0.10
    min_users: int = 10

    def holds(self, expired: int, running: int) -> bool:
        """True when disabling ``expired`` of ``running`` users is too many to be believed."""
        return expired > max(self.min_users, self.max_fraction * running)


@dataclass
class Selection:
    """One scan: the users to disable, and how many ACTIVE users there are in all."""

    expired: list[Planned] = field(default_factory=list)
    running: int = 0
    preview: list[dict[str, Any]] = field(default_factory=list)


def period_of(expire_at: datetime) -> str:
    """The expiry an action enforces, as stored in ``subscription_actions.period``."""
    return expire_at.astimezone(UTC).isoformat()


def select_expired(
    pages: Iterable[Sequence[User]], now: datetime, *, keep_preview: bool = False
) -> Selection:
    """ACTIVE users of ``pages`` whose ``expireAt`` is at or before ``now``."""
    found = Selection()
    for page in pages:
        for user in page:
            if user.status not in DISABLE_STATUSES:
                continue
            found.running += 1
            if user.expire_at <= now:
                found.expired.append(Planned(user.id, period_of(user.expire_at), user.telegram_id))
                if keep_preview:
                    found.preview.append(_preview(user))
    return found


def disable_expired(
    client: RemnawaveClient,
    database: Database,
    alerts: AdminAlerts,
    *,
    now: datetime,
    valve: Valve,
    renew_url: str,
    report: RunReport,
    limit: int | None = None,
) -> Selection:
    """Finish what a killed run left open, then disable every expired user the valve allows — at
    most ``limit`` of them (``None``: no cap)."""
    if limit is not None:
        report.details.update(batch_limit=limit, limited=False)
    if not report.dry_run:
        recover(client, database, renew_url=renew_url, report=report)
    found = select_expired(client.user_pages(), now, keep_preview=report.dry_run)
    report.add("scanned_running", found.running)
    report.add("expired", len(found.expired))
    if valve.holds(len(found.expired), found.running):
        report.add("held_by_valve", len(found.expired))
        report.details["valve"] = "held"
        if not report.dry_run:
            alerts.alert("subscriptions.disable_valve", _valve_text(found, valve), severity="critical")
        return found
    if report.dry_run:
        return found
    _disable(client, database, found.expired, renew_url=renew_url, report=report, limit=limit)
    return found


def _disable(
    client: RemnawaveClient, database: Database, expired: Sequence[Planned], *, renew_url: str,
    report: RunReport, limit: int | None,
) -> None:  # fmt: skip
    """Disable ``expired`` in bulk calls of ≤ 500, at most ``limit`` users: each batch is no larger
    than the room left, so no user is recorded or locked that the run will not disable."""
    disabled = start = 0
    while start < len(expired) and (limit is None or disabled < limit):
        size = BULK_MAX_IDS if limit is None else min(BULK_MAX_IDS, limit - disabled)
        batch = expired[start : start + size]
        acted, calls = actions.act(
            database, KIND, batch, client.bulk_disable, audit_action=AUDIT_ACTION, notice=_notice(renew_url)
        )
        disabled += acted
        start += len(batch)
        report.add("disabled", acted)
        report.add("bulk_calls", calls)
        report.add("already_handled", len(batch) - acted)
    if start < len(expired):  # the rest wait for the next run
        report.details["limited"] = True


def recover(client: RemnawaveClient, database: Database, *, renew_url: str, report: RunReport) -> None:
    """Actions a killed run left open: complete those the panel shows done (DISABLED, same expiry);
    close those renewed or deleted since; leave the rest to this run's scan."""
    for planned, user in actions.still_open(client, database, KIND, report):
        if period_of(user.expire_at) != planned.period:
            report.add("renewed_meanwhile", actions.close(database, KIND, [planned], "renewed"))
        elif user.status == "DISABLED":
            report.add("completed_after_crash", _complete(database, [planned], renew_url))
        elif user.status not in DISABLE_STATUSES:
            actions.close(database, KIND, [planned], "skipped")


def _notice(renew_url: str) -> actions.Notice:
    def notice(p: Planned) -> Outgoing | None:
        if p.telegram_id is None:
            return None
        text = texts.disabled(datetime.fromisoformat(p.period), renew_url)
        return Outgoing(f"disabled:{p.user_id}:{p.period}", p.telegram_id, text, NOTIFICATION_TYPE)

    return notice


def _complete(database: Database, batch: Sequence[Planned], renew_url: str) -> int:
    return actions.complete(database, KIND, batch, audit_action=AUDIT_ACTION, notice=_notice(renew_url))


def _valve_text(found: Selection, valve: Valve) -> str:
    share = len(found.expired) / found.running if found.running else 1.0
    return (
        f"disable_expired_users disabled NO ONE: {len(found.expired)} of {found.running} running users "
        f"({share:.0%}) would be switched off, above SUBSCRIPTIONS_DISABLE_MAX_FRACTION "
        f"({valve.max_fraction:.0%}). Check the worker's and the panel's clocks and the panel's users; "
        "see who with `worker-app subscriptions disable-expired --dry-run`. It stays held until fewer "
        "are expired or the fraction is raised."
    )


def _preview(user: User) -> dict[str, Any]:
    return {
        "id": user.id, "username": user.username, "status": user.status,
        "expire_at": period_of(user.expire_at), "telegram_id": user.telegram_id,
    }  # fmt: skip


@dramatiq.actor(queue_name=QUEUE, store_results=True)
def disable_expired_users() -> dict[str, Any]:
    """Disable ACTIVE users past ``expireAt`` (every 15 min) through the bulk endpoint,
    notify them with renewal instructions and audit it; held by the safety valve (see the module)."""
    runtime = get_runtime()
    s = runtime.settings
    with RunReport("disable_expired_users").running() as report:
        runtime.remnawave.require_3x()
        disable_expired(
            runtime.remnawave,
            runtime.database,
            runtime.alerts,
            now=datetime.now(UTC),
            valve=Valve(s.subscriptions_disable_max_fraction, s.subscriptions_disable_valve_min_users),
            renew_url=s.subscriptions_renew_url,
            report=report,
            limit=s.batch_limit(JOB),
        )
    return report.summary
