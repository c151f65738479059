"""Expiry reminders (PRD 2.1): one message per user and bracket as the end of a subscription nears.

Brackets are 7 d, 3 d, 24 h and 6 h before ``expireAt``; a user is in the smallest bracket that
still contains the time left (3.5 days left → ``7d``, 20 hours → ``24h``), so a user first seen
two hours before the end gets the ``6h`` reminder only. ACTIVE and LIMITED users are reminded
(DISABLED and EXPIRED ones have nothing running to lose).

Once per user and bracket, twice over: the Redis key ``cybervpn:sub_reminder:{user}:{bracket}``
(TTL = the bracket) skips users reminded already without touching PostgreSQL, and the reminder's
``notification_queue`` row id is derived from (user, bracket, expiry), so a lost key, a redelivered
run or a worker killed between the insert and the key inserts nothing twice. The reminder goes
through ``notification_queue``: rate limits, retries and the sent journal apply. Users without a
telegram id are skipped and counted.

``CHECK_EXPIRING_SUBSCRIPTIONS_BATCH_LIMIT`` caps the reminders one run queues: the run stops
scanning at the first user it has no room for (``limited``), and the next run, finding the users
reminded already, reminds the rest.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import dramatiq
import redis

from actors.notifications.outbox import Outgoing, queue_notifications
from actors.subscriptions import texts
from actors.subscriptions.report import RunReport
from worker_app.clients.remnawave import User
from worker_app.db import Database
from worker_app.redis_client import key
from worker_app.runtime import get_runtime
from worker_app.telegram.text import CHAT_ID_MAX, CHAT_ID_MIN

QUEUE = "subscriptions"
JOB = "check_expiring_subscriptions"
log = logging.getLogger(__name__)

BRACKETS = (("6h", 6 * 3600), ("24h", 24 * 3600), ("3d", 3 * 86_400), ("7d", 7 * 86_400))
"""(name, seconds), smallest first."""
REMIND_STATUSES = frozenset({"ACTIVE", "LIMITED"})
NOTIFICATION_TYPE = "subscription_reminder"


def bracket_of(expire_at: datetime, now: datetime) -> tuple[str, int] | None:
    """The reminder bracket ``(name, seconds)`` of a subscription ending at ``expire_at``; ``None``
    when it has ended or ends more than 7 days from ``now``."""
    left_s = (expire_at - now).total_seconds()
    if left_s <= 0:
        return None
    return next(((name, s) for name, s in BRACKETS if left_s <= s), None)


def reminder_key(user_id: int, bracket: str) -> str:
    """``cybervpn:sub_reminder:{user}:{bracket}``."""
    return key("sub_reminder", user_id, bracket)


def queue_reminders(
    pages: Iterable[Sequence[User]],
    database: Database,
    redis_client: redis.Redis,
    *,
    now: datetime,
    renew_url: str,
    report: RunReport,
    limit: int | None = None,
) -> None:
    """Queue the reminder every due user of ``pages`` has not had yet in its bracket; at most
    ``limit`` of them (``None``: no cap)."""
    if limit is not None:
        report.details.update(batch_limit=limit, limited=False)
    for page in pages:
        report.add("scanned", len(page))
        due = [(u, b) for u in page if u.status in REMIND_STATUSES and (b := bracket_of(u.expire_at, now))]
        report.add("due", len(due))
        with_id = [(u, b) for u, b in due if u.telegram_id is not None]
        report.add("no_telegram_id", len(due) - len(with_id))
        reachable = [(u, b) for u, b in with_id if CHAT_ID_MIN <= (u.telegram_id or 0) <= CHAT_ID_MAX]
        report.add("bad_telegram_id", len(with_id) - len(reachable))
        fresh = _not_reminded(redis_client, reachable)
        room = None if limit is None else limit - report.counts["queued"]
        offered, queued = _queue(database, [_reminder(u, name, renew_url) for u, (name, _) in fresh], room)
        report.add("queued", queued)
        report.add("already_reminded", len(reachable) - len(fresh) + offered - queued)
        _mark_reminded(redis_client, fresh[:offered])
        if offered < len(fresh):  # the rest of the due users wait for the next run
            report.details["limited"] = True
            return


def _queue(database: Database, messages: Sequence[Outgoing], room: int | None) -> tuple[int, int]:
    """Queue ``messages`` in order until ``room`` are queued (``None``: no cap); (how many were
    offered, how many queued). A message queued before (its row exists) takes no room, so the rest
    are offered in turn: a lost Redis key cannot hold the same users at the head of every run."""
    offered = queued = 0
    while offered < len(messages) and (room is None or queued < room):
        chunk = messages[offered:] if room is None else messages[offered : offered + room - queued]
        with database.transaction() as s:
            queued += len(queue_notifications(s, chunk))
        offered += len(chunk)
    return offered, queued


def _reminder(user: User, bracket: str, renew_url: str) -> Outgoing:
    assert user.telegram_id is not None
    return Outgoing(
        key=f"reminder:{user.id}:{bracket}:{user.expire_at.astimezone(UTC).isoformat()}",
        telegram_id=user.telegram_id,
        text=texts.reminder(bracket, user.expire_at, renew_url),
        notification_type=NOTIFICATION_TYPE,
    )


Due = Sequence[tuple[User, tuple[str, int]]]


def _not_reminded(redis_client: redis.Redis, due: Due) -> Due:
    """``due`` without the users whose Redis key says they had this bracket's reminder. Redis down:
    all of them (the row ids still keep the reminder once-only)."""
    if not due:
        return due
    try:
        with redis_client.pipeline(transaction=False) as pipe:
            for user, (bracket, _) in due:
                pipe.exists(reminder_key(user.id, bracket))
            seen = pipe.execute()
    except redis.RedisError as e:
        log.warning("reminder keys unreadable (%s); the notification_queue ids keep reminders once-only", e)
        return due
    return [item for item, hit in zip(due, seen, strict=True) if not hit]


def _mark_reminded(redis_client: redis.Redis, done: Due) -> None:
    if not done:
        return
    try:
        with redis_client.pipeline(transaction=False) as pipe:
            for user, (bracket, ttl_s) in done:
                pipe.set(reminder_key(user.id, bracket), "1", ex=ttl_s)
            pipe.execute()
    except redis.RedisError as e:
        log.warning("reminder keys not written (%s); the next run finds the rows queued already", e)


@dramatiq.actor(queue_name=QUEUE, store_results=True)
def check_expiring_subscriptions() -> dict[str, Any]:
    """Queue expiry reminders (hourly): brackets 7 d / 3 d / 24 h / 6 h, one per user and bracket,
    through ``notification_queue``. Scans every panel user through the stream endpoint."""
    runtime = get_runtime()
    client = runtime.remnawave
    with RunReport("check_expiring_subscriptions").running() as report:
        client.require_3x()
        queue_reminders(
            client.user_pages(),
            runtime.database,
            runtime.redis,
            now=datetime.now(UTC),
            renew_url=runtime.settings.subscriptions_renew_url,
            report=report,
            limit=runtime.settings.batch_limit(JOB),
        )
    return report.summary
