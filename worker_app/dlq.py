"""Dead-letter operations: filter, list, replay, discard, export (``worker-app dlq``).

Replay is crash-safe. Each dead letter is replayed in its own short transaction: the row is locked
(``FOR UPDATE SKIP LOCKED``, so two replays never publish the same row), a fresh message is
published with a publisher confirm, and the row is marked ``replayed`` with that message's id. A
replay killed at any point loses nothing: rows not yet marked are still ``dead`` and the next run
publishes them. The only row a re-run can publish twice is the one whose confirm arrived just as
the process died; its two messages carry the option ``replay_of = <dead letter id>`` and the
worker's :class:`~worker_app.middleware.replays.ReplayClaims` runs only the first to start.

A replayed message keeps its actor, arguments and ``trace_id``, and starts with a fresh retry budget
(the options of the failed attempts — retries, traceback, failure times, dead reason, eta — are
dropped, as is a scheduled fire's ``scheduled`` claim).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import dramatiq
import pika
from dramatiq.common import xq_name
from dramatiq.errors import DecodeError
from sqlalchemy import ColumnElement, Select, Text, and_, cast, func, or_, select, update

from models import DeadLetter
from worker_app import amqp
from worker_app.db import Database
from worker_app.dead_letters import DeadLetterRecord, DeadLetterStore, clean_options, undecodable_message_id

#: Options of the failed attempts that a replay must not carry.
_FAILED_ATTEMPT_OPTIONS = (
    "retries", "traceback", "eta", "first_failed_at", "last_failed_at", "dead_reason",
    "rate_limited_retries", "scheduled", "replay_of", "redelivered", "due_at",
)  # fmt: skip
STATUSES = ("dead", "replayed", "discarded", "all")
BIGINT_MAX = 2**63 - 1


@dataclass(frozen=True)
class DeadLetterFilter:
    """Which dead letters an operation applies to; empty fields match everything."""

    ids: tuple[int, ...] = ()
    queue: str | None = None
    actor: str | None = None
    error: str | None = None  # case-insensitive substring of the exception type or message
    q: str | None = None  # case-insensitive substring of the actor, the error or the arguments (search)
    since: datetime | None = None
    until: datetime | None = None
    status: str = "dead"

    def is_empty(self) -> bool:
        return not (self.ids or self.queue or self.actor or self.error or self.q or self.since or self.until)

    def conditions(self) -> list[ColumnElement[bool]]:
        found: list[ColumnElement[bool]] = []
        if self.ids:  # an id beyond bigint names no row (and must not reach PostgreSQL)
            found.append(DeadLetter.id.in_([i for i in self.ids if 0 < i <= BIGINT_MAX]))
        if self.queue:
            found.append(DeadLetter.queue_name == self.queue)
        if self.actor:
            found.append(DeadLetter.actor_name == self.actor)
        if self.error:
            pattern = contains(self.error)  # % and _ in the text mean themselves
            found.append(
                or_(
                    DeadLetter.exception_type.ilike(pattern, escape="\\"),
                    DeadLetter.exception_message.ilike(pattern, escape="\\"),
                )
            )
        if self.q:
            found.append(search(self.q))
        if self.since:
            found.append(DeadLetter.dead_at >= self.since)
        if self.until:
            found.append(DeadLetter.dead_at < self.until)
        if self.status != "all":
            found.append(DeadLetter.status == self.status)
        return found

    def select(self) -> Select[DeadLetter]:
        return select(DeadLetter).where(and_(True, *self.conditions()))


def contains(text: str) -> str:
    """An ``ILIKE`` pattern (escape character ``\\``) matching ``text`` anywhere, ``%`` and ``_`` as
    themselves."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def search(text: str) -> ColumnElement[bool]:
    """Dead letters whose actor, exception type or message, or arguments (``args`` or ``kwargs`` as
    their JSON text) contain ``text``, case-insensitively. Without an index this reads every row the
    other filters leave; a trigram (``pg_trgm``) GIN index over these five expressions serves it."""
    pattern = contains(text)
    return or_(
        *(
            column.ilike(pattern, escape="\\")
            for column in (
                DeadLetter.actor_name, DeadLetter.exception_type, DeadLetter.exception_message,
                cast(DeadLetter.args, Text), cast(DeadLetter.kwargs, Text),
            )
        )
    )  # fmt: skip


def parse_iso(value: str) -> datetime:
    """An ISO time; UTC unless it carries an offset. Raises ``ValueError``."""
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def count(database: Database, where: DeadLetterFilter) -> int:
    with database.new_session() as s:
        return int(s.scalar(select(func.count()).select_from(DeadLetter).where(*where.conditions())) or 0)


def listing(database: Database, where: DeadLetterFilter, limit: int) -> list[DeadLetter]:
    """The most recent matches first."""
    with database.new_session() as s:
        return list(
            s.scalars(where.select().order_by(DeadLetter.dead_at.desc(), DeadLetter.id.desc()).limit(limit))
        )


def iterate(database: Database, where: DeadLetterFilter, batch: int = 1000) -> Iterator[DeadLetter]:
    """Every match, oldest first, in batches (constant memory)."""
    last_id = 0
    while True:
        with database.new_session() as s:
            rows = list(
                s.scalars(where.select().where(DeadLetter.id > last_id).order_by(DeadLetter.id).limit(batch))
            )
        if not rows:
            return
        yield from rows
        last_id = rows[-1].id


def as_dict(row: DeadLetter, *, with_traceback: bool = True) -> dict[str, Any]:
    """A dead letter as JSON-ready data (the raw body of an undecodable message as text)."""
    data: dict[str, Any] = {}
    for column in DeadLetter.__table__.columns:
        if column.name == "traceback" and not with_traceback:
            continue
        value = getattr(row, column.name)
        if isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, bytes):
            value = value.decode(errors="replace")
        data[column.name] = value
    return data


def export_lines(database: Database, where: DeadLetterFilter) -> Iterator[str]:
    """One JSON object per matching dead letter."""
    for row in iterate(database, where):
        yield json.dumps(as_dict(row), default=str)


def replay_options(options: dict[str, Any] | None, dead_letter_id: int) -> dict[str, Any]:
    kept = {k: v for k, v in (options or {}).items() if k not in _FAILED_ATTEMPT_OPTIONS}
    kept["replay_of"] = dead_letter_id
    return kept


def why_not_replayable(row: DeadLetter) -> str | None:
    """Why ``row`` cannot be replayed, or ``None``. (The actor need not be defined in this process:
    the message goes to its queue, and a worker that does not know the actor records it dead again.)"""
    if row.actor_name is None:
        return "undecodable body: nothing to replay"
    return None


@dataclass
class ReplayReport:
    matched: int = 0
    replayed: int = 0
    skipped: dict[int, str] = field(default_factory=dict)  # dead letter id -> why not
    messages: dict[int, str] = field(default_factory=dict)  # dead letter id -> new message id


def replay(
    database: Database,
    broker: dramatiq.Broker,
    where: DeadLetterFilter,
    *,
    dry_run: bool = False,
    progress: Callable[[ReplayReport], None] | None = None,
) -> ReplayReport:
    """Replay every ``dead`` match, one row per transaction (see the module docstring)."""
    report = ReplayReport()
    for row in iterate(database, replace(where, status="dead")):
        report.matched += 1
        reason = why_not_replayable(row)
        if reason is not None:
            report.skipped[row.id] = reason
        elif not dry_run:
            message_id = _replay_one(database, broker, row.id)
            if message_id is None:
                report.skipped[row.id] = "no longer dead (replayed or discarded meanwhile)"
            else:
                report.replayed += 1
                report.messages[row.id] = message_id
        if progress is not None:
            progress(report)
    return report


def _replay_one(database: Database, broker: dramatiq.Broker, dead_letter_id: int) -> str | None:
    with database.transaction() as s:
        row = s.scalar(
            select(DeadLetter)
            .where(DeadLetter.id == dead_letter_id, DeadLetter.status == "dead")
            .with_for_update(skip_locked=True)
        )
        if row is None or row.actor_name is None:
            return None
        message: dramatiq.Message[Any] = dramatiq.Message(
            queue_name=row.queue_name,
            actor_name=row.actor_name,
            args=tuple(row.args or ()),
            kwargs=dict(row.kwargs or {}),
            options=replay_options(row.options, row.id),
            message_id=str(uuid.uuid4()),
        )
        broker.enqueue(message)  # returns after the publisher confirm
        row.status = "replayed"
        row.replayed_at = datetime.now(UTC)
        row.replay_message_id = message.message_id
    return message.message_id


def discard(database: Database, where: DeadLetterFilter) -> int:
    """Mark every ``dead`` match ``discarded`` (kept for the record, never replayed); how many."""
    with database.transaction() as s:
        result = s.execute(
            update(DeadLetter)
            .where(*replace(where, status="dead").conditions())
            .values(status="discarded", discarded_at=func.now())
            .execution_options(synchronize_session=False)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]


def open_counts_by_queue(database: Database) -> dict[str, int]:
    """Open dead letters (status ``dead``: neither replayed nor discarded) per queue; a queue with
    none is absent. One ``GROUP BY``; a database error is raised, never read as zero."""
    with database.new_session() as s:
        rows = s.execute(
            select(DeadLetter.queue_name, func.count())
            .where(DeadLetter.status == "dead")
            .group_by(DeadLetter.queue_name)
        )
        return {str(queue): int(n) for queue, n in rows}


@dataclass
class AdoptReport:
    seen: dict[str, int] = field(default_factory=dict)  # xq -> messages read
    adopted: dict[str, int] = field(default_factory=dict)  # xq -> records written


def _adopted_note(queue: str, previous_traceback: object) -> str:
    # RabbitMQ dead-letters the body as it was delivered, so a traceback option in it is the one
    # the Retries middleware stored after the attempt before the last; the last one's is lost.
    note = f"adopted from {xq_name(queue)}: it died without a record"
    if previous_traceback:
        return (
            f"{note}; the traceback is an earlier attempt's (the one the message carried), not the last one's"
        )
    return f"{note}; no traceback was kept (the message carried none)"


def _record_from_xq(queue: str, body: bytes, amqp_message_id: str | None) -> DeadLetterRecord:
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    try:
        message = dramatiq.Message.decode(body)
    except DecodeError as e:
        return DeadLetterRecord(
            message_id=amqp_message_id or undecodable_message_id(queue, body), queue_name=queue,
            reason="undecodable", raw_body=body, exception_type=type(e).__name__,
            exception_message=f"adopted from {xq_name(queue)}: body is not a message; no traceback was kept",
            first_failed_at=now_ms, last_failed_at=now_ms,
        )  # fmt: skip
    options = dict(message.options)
    previous = options.get("traceback")
    return DeadLetterRecord(
        message_id=message.message_id, queue_name=queue, reason="adopted", actor_name=message.actor_name,
        args=list(message.args), kwargs=dict(message.kwargs), options=clean_options(options),
        exception_type=None, exception_message=_adopted_note(queue, previous),
        traceback=str(previous) if previous else None, attempts=int(options.get("retries", 0)) + 1,
        first_failed_at=int(options.get("first_failed_at", now_ms)),
        last_failed_at=int(options.get("last_failed_at", now_ms)), trace_id=options.get("trace_id"),
    )  # fmt: skip


def _read_xq(channel: Any, queue: str) -> tuple[list[DeadLetterRecord], int] | None:
    """Every message in ``<queue>.XQ`` as a record, left unacked, with the last delivery tag;
    ``None`` when the .XQ was never declared (the broker then closes ``channel``)."""
    try:
        depth = int(channel.queue_declare(xq_name(queue), passive=True).method.message_count)
    except pika.exceptions.ChannelClosedByBroker:
        return None
    records: list[DeadLetterRecord] = []
    last_tag = 0
    for _ in range(depth):
        method, properties, body = channel.basic_get(xq_name(queue), auto_ack=False)
        if method is None:
            break
        last_tag = method.delivery_tag
        records.append(_record_from_xq(queue, body, getattr(properties, "message_id", None)))
    return records, last_tag


def _distinct(records: list[DeadLetterRecord]) -> list[DeadLetterRecord]:
    """One record per message id and per undecodable body (the first one read)."""
    by_id: dict[str, DeadLetterRecord] = {}
    bodies: set[bytes] = set()
    for record in records:
        if record.message_id in by_id or record.raw_body in bodies:
            continue
        by_id[record.message_id] = record
        if record.raw_body is not None:
            bodies.add(record.raw_body)
    return list(by_id.values())


def _unrecorded(database: Database, queue: str, records: list[DeadLetterRecord]) -> list[DeadLetterRecord]:
    """The distinct ``records`` with no dead-letter row yet: none with their message id and, for an
    undecodable body, none of ``queue`` with the same bytes under any id (the worker's own record,
    or one an older ``adopt`` wrote under a random id)."""
    distinct = _distinct(records)
    bodies = [r.raw_body for r in distinct if r.raw_body is not None]
    with database.new_session() as s:
        ids = set(
            s.scalars(
                select(DeadLetter.message_id).where(
                    DeadLetter.message_id.in_([r.message_id for r in distinct])
                )
            )
        )
        known_bodies = set(
            s.scalars(
                select(DeadLetter.raw_body).where(
                    DeadLetter.queue_name == queue, DeadLetter.raw_body.in_(bodies)
                )
            )
            if bodies
            else ()
        )
    return [r for r in distinct if r.message_id not in ids and r.raw_body not in known_bodies]


def adopt_xq(store: DeadLetterStore, amqp_urls: list[str], queues: list[str]) -> AdoptReport:
    """Record every message in ``<queue>.XQ`` that has no dead-letter record yet ("adopted").

    Idempotent: run it any number of times over the same .XQ and each message is recorded once.
    The rule is one record per message: a Dramatiq message by its message id; an undecodable body
    by its content (queue and bytes), under its AMQP message id or else an id derived from the
    content (:func:`~worker_app.dead_letters.undecodable_message_id`). So two identical undecodable
    bodies in one .XQ make one record, and a body the worker already recorded is not recorded again.

    The messages are read without acking and requeued afterwards, so ``.XQ`` depths stay as they were.
    """
    report = AdoptReport()
    connection = amqp.connect(amqp_urls)
    try:
        for queue in queues:
            channel = connection.channel()
            read = _read_xq(channel, queue)
            if read is None:
                continue  # never declared: nothing dead there
            records, last_tag = read
            if records:
                missing = _unrecorded(store.database, queue, records)
                if missing:
                    store.insert(missing)
                report.adopted[xq_name(queue)] = len(missing)
                channel.basic_nack(delivery_tag=last_tag, multiple=True, requeue=True)
            report.seen[xq_name(queue)] = len(records)
            channel.close()
    finally:
        connection.close()
    return report
