"""Durable record of every dead message (the operator's source of truth for inspection and replay).

Written to PostgreSQL (``dead_letters``). If PostgreSQL is unreachable the record goes to the
Redis list ``cybervpn:dead_letters:spool`` and is moved to PostgreSQL by a thread of every worker
process, every ``DRAIN_EVERY_S`` (or ``worker-app dlq drain``); if Redis fails too, the whole record
is logged at CRITICAL.
The RabbitMQ ``<queue>.XQ`` copy remains in every case.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import traceback
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import redis
from sqlalchemy import literal_column, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import SQLAlchemyError

from models import DeadLetter
from worker_app.db import Database
from worker_app.redaction import redact
from worker_app.redis_client import key

log = logging.getLogger(__name__)
SPOOL_KEY = key("dead_letters", "spool")
SPOOLED_CLAIM_TTL_S = 7 * 86_400
DRAIN_EVERY_S = 5.0
"""How often each worker process moves spooled records to PostgreSQL (``DeadLetters``' thread)."""
_DROPPED_OPTIONS = ("traceback", "eta")


@dataclass
class DeadLetterRecord:
    """Everything known about a dead message; times are epoch milliseconds."""

    message_id: str
    queue_name: str
    reason: str
    actor_name: str | None = None
    args: list[Any] | None = None
    kwargs: dict[str, Any] | None = None
    options: dict[str, Any] | None = None
    raw_body: bytes | None = None
    exception_type: str | None = None
    exception_message: str | None = None
    traceback: str | None = None
    attempts: int = 1
    first_failed_at: int = 0
    last_failed_at: int = 0
    trace_id: str | None = None

    def to_row(self) -> dict[str, Any]:
        """Column values for ``dead_letters``."""
        row = asdict(self)
        row["first_failed_at"] = _from_ms(self.first_failed_at)
        row["last_failed_at"] = _from_ms(self.last_failed_at)
        return row

    def to_json(self) -> str:
        """A JSON line for the spool or the log (raw body base64-encoded)."""
        data = asdict(self)
        data["raw_body"] = base64.b64encode(self.raw_body).decode() if self.raw_body is not None else None
        return json.dumps(data, default=str)

    @classmethod
    def from_json(cls, text: str) -> DeadLetterRecord:
        """Inverse of :meth:`to_json`."""
        data = json.loads(text)
        if data.get("raw_body") is not None:
            data["raw_body"] = base64.b64decode(data["raw_body"])
        return cls(**data)


def _from_ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, tz=UTC)


def describe_exception(exc: BaseException | None) -> tuple[str | None, str | None, str | None]:
    """(type, message, full traceback) of ``exc``, redacted; all ``None`` without one."""
    if exc is None:
        return None, None, None
    described: tuple[str, str, str] | None = getattr(exc, "_cybervpn_described", None)
    if described is not None:  # a bug's alert described it already; the dead letter reuses it
        return described
    text = "".join(traceback.format_exception(exc))
    kind = f"{type(exc).__module__}.{type(exc).__qualname__}".removeprefix("builtins.")
    described = (kind, redact(str(exc)), redact(text))
    with contextlib.suppress(AttributeError):  # an exception type with __slots__ just is not cached
        exc._cybervpn_described = described  # type: ignore[attr-defined]
    return described


def undecodable_message_id(queue_name: str, body: bytes) -> str:
    """A stable id for an undecodable body that came without an AMQP message id: the same queue and
    bytes always give the same id, so recording the same body again updates its row instead of
    adding one (``worker-app dlq adopt`` runs at every start)."""
    digest = hashlib.sha256(queue_name.encode() + b"\0" + body).hexdigest()
    return f"undecodable-{digest[:40]}"


def clean_options(options: dict[str, Any]) -> dict[str, Any]:
    """Message options worth keeping on the record (no stale traceback, no eta)."""
    return {k: v for k, v in options.items() if k not in _DROPPED_OPTIONS}


def _upsert() -> Any:
    """One statement for every write (compiled once): insert, or refresh the failure of a message id
    recorded before (a redelivered message), returning each row's id and whether its exhaustion
    action is due: the row is new (``xmax = 0``: inserted by this statement), or a copy recorded it
    before but died before its action was marked done."""
    table: Any = DeadLetter.__table__
    stmt = insert(table)
    refreshed = ("reason", "exception_type", "exception_message", "traceback", "attempts", "last_failed_at")
    return stmt.on_conflict_do_update(
        index_elements=["message_id"], set_={c: stmt.excluded[c] for c in refreshed}
    ).returning(
        table.c.id,
        literal_column("xmax = 0 OR action_done_at IS NULL"),
        sort_by_parameter_order=True,
    )


_UPSERT = _upsert()
_MARK_ACTED = text("UPDATE dead_letters SET action_done_at = now() WHERE id = :id AND action_done_at IS NULL")


@dataclass(frozen=True)
class Recorded:
    """Where a record went. ``new``: its exhaustion action is due — the first record of that message
    id, or a copy redelivered after the one before it died between recording and acting (then
    :meth:`DeadLetterStore.mark_acted`). ``dead_letter_id``: the row's id
    when PostgreSQL took it. ``where``: ``postgres``, ``spool`` (Redis, moved later) or ``log``
    (nowhere durable: the CRITICAL log line is all that remains)."""

    new: bool
    where: str
    dead_letter_id: int | None = None


def spooled_claim_key(message_id: str) -> str:
    """Redis key marking that a spooled record of ``message_id`` already ran its action."""
    return key("dead_letters", "spooled", message_id)


class DeadLetterStore:
    """Writes dead-letter records durably, with the spool fallbacks described above."""

    def __init__(self, database: Database, redis_client: redis.Redis) -> None:
        self.database = database
        self.redis = redis_client

    def record(self, rec: DeadLetterRecord) -> Recorded:
        """Persist ``rec``; never raises (falls back to the spool, then to a CRITICAL log line)."""
        try:
            dead_letter_id, new = self._insert([rec])[0]
        except SQLAlchemyError as e:
            log.error("dead letter %s not written to PostgreSQL (%s); spooling to Redis", rec.message_id, e)
            return self._spool(rec)
        log.warning(
            "message %s of %s is dead (%s): %s",
            rec.message_id,
            rec.actor_name or rec.queue_name,
            rec.reason,
            rec.exception_message or rec.exception_type,
        )
        return Recorded(new, "postgres", dead_letter_id)

    def mark_acted(self, dead_letter_id: int) -> None:
        """Record that the dead letter's exhaustion action ran; never raises (unmarked, a
        redelivered copy would run it again)."""
        try:
            with self.database.engine.begin() as conn:
                conn.execute(_MARK_ACTED, {"id": dead_letter_id})
        except SQLAlchemyError as e:
            log.warning("dead letter %s: exhaustion action not marked done (%s)", dead_letter_id, e)

    def drain(self, limit: int = 1000) -> int:
        """Move spooled records to PostgreSQL; how many were moved."""
        moved = 0
        try:
            while moved < limit:
                raw = self.redis.lindex(SPOOL_KEY, -1)
                if raw is None:
                    break
                self._insert([DeadLetterRecord.from_json(str(raw))], acted=True)  # acted when spooled
                self.redis.rpop(SPOOL_KEY)
                moved += 1
        except (redis.RedisError, SQLAlchemyError) as e:
            log.warning("dead-letter spool drain stopped after %d: %s", moved, e)
        return moved

    def known_message_ids(self, message_ids: list[str]) -> set[str]:
        """Which of ``message_ids`` already have a record."""
        if not message_ids:
            return set()
        with self.database.new_session() as s:
            found = s.scalars(select(DeadLetter.message_id).where(DeadLetter.message_id.in_(message_ids)))
            return set(found)

    def insert(self, records: list[DeadLetterRecord]) -> None:
        """Write ``records`` found elsewhere (``dlq adopt``: an existing message id is updated), with no
        exhaustion action due; raises on a database error."""
        self._insert(records, acted=True)

    def _insert(self, records: list[DeadLetterRecord], *, acted: bool = False) -> list[tuple[int, bool]]:
        """Upsert ``records``; per record, its row id and whether its exhaustion action is due.
        ``acted``: new rows need none (their action ran elsewhere, or they were adopted)."""
        done = datetime.now(UTC) if acted else None
        with self.database.engine.begin() as conn:
            result = conn.execute(_UPSERT, [{**r.to_row(), "action_done_at": done} for r in records])
            return [(int(i), bool(new)) for i, new in result]

    def _spool(self, rec: DeadLetterRecord) -> Recorded:
        """Spool ``rec`` to Redis; new unless an earlier spooling of the same message id claimed it."""
        try:
            self.redis.lpush(SPOOL_KEY, rec.to_json())
            claimed = self.redis.set(spooled_claim_key(rec.message_id), "1", nx=True, ex=SPOOLED_CLAIM_TTL_S)
        except redis.RedisError as e:
            log.critical(
                "dead letter could not be stored anywhere (%s); record follows: %s", e, rec.to_json()
            )
            return Recorded(True, "log")
        return Recorded(bool(claimed), "spool")
