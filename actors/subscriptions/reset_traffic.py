"""The monthly traffic reset (PRD 2.3): every running subscription (ACTIVE or LIMITED, not expired)
starts the month at zero.

Run on the 1st at 00:00 UTC. The panel's own ``lastTrafficResetAt`` says who is done: users reset
at or after the month's start (by this job, a previous run of it, or the panel's own MONTH
strategy) are skipped, so a run repeated for the same month — a redelivery, a manual re-run, a
worker killed mid-way — resets no one twice. Resets go in bulk calls of
SUBSCRIPTIONS_RESET_BATCH_SIZE ids, recorded before and completed after each call
(:mod:`actors.subscriptions.actions`), and each user with a telegram id gets one notice per month.
The scan goes page by page through the stream endpoint, resetting as it goes: constant memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import dramatiq
from dramatiq.middleware import CurrentMessage

from actors.notifications.outbox import Outgoing
from actors.subscriptions import actions, texts
from actors.subscriptions.actions import Planned
from actors.subscriptions.report import RunReport
from worker_app.clients.remnawave import RemnawaveClient, User
from worker_app.db import Database
from worker_app.middleware.scheduled import fire_of
from worker_app.runtime import get_runtime

QUEUE = "subscriptions"
KIND = "traffic_reset"
AUDIT_ACTION = "traffic_reset"
NOTIFICATION_TYPE = "traffic_reset"
RESET_STATUSES = frozenset({"ACTIVE", "LIMITED"})


def month_start(now: datetime) -> datetime:
    """00:00 UTC on the first day of ``now``'s month."""
    now = now.astimezone(UTC)
    return datetime(now.year, now.month, 1, tzinfo=UTC)


def needs_reset(user: User, since: datetime, now: datetime) -> bool:
    """An ACTIVE or LIMITED user whose subscription runs past ``now``, not reset since ``since``
    (an expired LIMITED user stays cut off: a reset would make it ACTIVE again)."""
    reset_at = user.last_traffic_reset_at
    return user.status in RESET_STATUSES and user.expire_at > now and (reset_at is None or reset_at < since)


def reset_monthly(
    client: RemnawaveClient,
    database: Database,
    *,
    now: datetime,
    batch_size: int,
    report: RunReport,
    month_of: datetime | None = None,
) -> None:
    """Reset every user of the month not reset yet, in batches, notifying each once. The month is
    ``month_of``'s (the scheduled fire time: a worker whose clock is a moment behind the scheduler's
    at 00:00 on the 1st still resets the new month), else ``now``'s."""
    since = month_start(month_of or now)
    period = since.strftime("%Y-%m")
    report.details["month"] = period
    _recover(client, database, since, now, report)
    for page in client.user_pages():
        report.add("scanned", len(page))
        due = [Planned(u.id, period, u.telegram_id) for u in page if needs_reset(u, since, now)]
        report.add("not_due", len(page) - len(due))
        for start in range(0, len(due), batch_size):
            acted, calls = actions.act(
                database, KIND, due[start : start + batch_size], client.bulk_reset_traffic,
                audit_action=AUDIT_ACTION, notice=_notice,
            )  # fmt: skip
            report.add("reset", acted)
            report.add("bulk_calls", calls)


def _recover(
    client: RemnawaveClient, database: Database, since: datetime, now: datetime, report: RunReport
) -> None:
    """Open actions of a killed run: complete those the panel shows reset this month; close those of
    an earlier month, of deleted users and of users no longer due (expired since); the rest this
    run's scan resets."""
    period = since.strftime("%Y-%m")
    for planned, user in actions.still_open(client, database, KIND, report):
        if planned.period != period:  # a month gone by: its reset is past doing
            actions.close(database, KIND, [planned], "stale")
            continue
        reset_at = user.last_traffic_reset_at
        if reset_at is not None and reset_at >= since:
            report.add("completed_after_crash", _complete(database, [planned]))
        elif not needs_reset(user, since, now):
            actions.close(database, KIND, [planned], "skipped")


def _notice(p: Planned) -> Outgoing | None:
    if p.telegram_id is None:
        return None
    return Outgoing(f"traffic_reset:{p.user_id}:{p.period}", p.telegram_id, texts.traffic_reset(p.period),
                    NOTIFICATION_TYPE)  # fmt: skip


def _complete(database: Database, batch: Sequence[Planned]) -> int:
    return actions.complete(database, KIND, batch, audit_action=AUDIT_ACTION, notice=_notice)


@dramatiq.actor(queue_name=QUEUE, store_results=True)
def reset_monthly_traffic() -> dict[str, Any]:
    """Reset used traffic of every ACTIVE/LIMITED user not reset this month (1st, 00:00 UTC), in
    bulk batches of SUBSCRIPTIONS_RESET_BATCH_SIZE, with one notice each; once per user and month."""
    runtime = get_runtime()
    message = CurrentMessage.get_current_message()
    fire = fire_of(message) if message is not None else None
    with RunReport("reset_monthly_traffic").running() as report:
        runtime.remnawave.require_3x()
        reset_monthly(
            runtime.remnawave,
            runtime.database,
            now=datetime.now(UTC),
            batch_size=runtime.settings.subscriptions_reset_batch_size,
            report=report,
            month_of=fire[1] if fire is not None else None,
        )
    return report.summary
