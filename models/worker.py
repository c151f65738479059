"""The worker's own tables."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    Text,
    cast,
    column,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base

DEAD_LETTER_REASONS = (
    "retries_exhausted",
    "permanent_error",
    "bad_message",
    "undecodable",
    "unknown_actor",
    "age_limit",
    "redelivery_limit",
    "retry_enqueue_failed",
    "failed",
    "adopted",
)
DEAD_LETTER_STATUSES = ("dead", "replayed", "discarded")


class DeadLetter(Base):
    """A message that ended dead, recorded durably with its final traceback.

    RabbitMQ's ``<queue>.XQ`` copy carries the previous attempt's traceback at best and expires;
    this row is the operator's source of truth for inspection and replay.
    """

    __tablename__ = "dead_letters"
    __table_args__ = (
        CheckConstraint(f"reason IN {DEAD_LETTER_REASONS}", name="reason"),
        CheckConstraint(f"status IN {DEAD_LETTER_STATUSES}", name="status"),
        Index("ix_dead_letters_queue_dead_at", "queue_name", "dead_at"),
        # migration 0019: the dashboard's counts, and its search (pg_trgm; worker_app.dlq.search)
        Index("ix_dead_letters_status_queue_actor", "status", "queue_name", "actor_name"),
        Index(
            "ix_dead_letters_search",
            "actor_name",
            "exception_type",
            "exception_message",
            cast(column("args"), Text).label("args_text"),
            cast(column("kwargs"), Text).label("kwargs_text"),
            postgresql_using="gin",
            postgresql_ops={
                name: "gin_trgm_ops"
                for name in ("actor_name", "exception_type", "exception_message", "args_text", "kwargs_text")
            },
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(String(64), unique=True)
    queue_name: Mapped[str] = mapped_column(String(128))
    actor_name: Mapped[str | None] = mapped_column(String(128), index=True)
    args: Mapped[list[Any] | None] = mapped_column(JSONB)
    kwargs: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    options: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    raw_body: Mapped[bytes | None] = mapped_column(LargeBinary)
    reason: Mapped[str] = mapped_column(String(32))
    exception_type: Mapped[str | None] = mapped_column(String(255))
    exception_message: Mapped[str | None] = mapped_column(Text)
    traceback: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(server_default="1")
    first_failed_at: Mapped[datetime]
    last_failed_at: Mapped[datetime]
    dead_at: Mapped[datetime] = mapped_column(server_default=func.now(), index=True)
    trace_id: Mapped[str | None] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(16), server_default="dead")
    replayed_at: Mapped[datetime | None]
    replay_message_id: Mapped[str | None] = mapped_column(String(64))
    replay_started_at: Mapped[datetime | None]
    replay_started_message_id: Mapped[str | None] = mapped_column(String(64))
    discarded_at: Mapped[datetime | None]
    action_done_at: Mapped[datetime | None]
    """When its exhaustion action ran; NULL: due (a copy redelivered after a crash runs it)."""


JOB_STATUSES = (
    "queued", "running", "succeeded", "failed", "dead", "deferred", "sending", "cancelled",
)  # fmt: skip
FINISHED_JOB_STATUSES = ("succeeded", "failed", "dead", "deferred", "cancelled")
"""The job's message is done with (a page following it can stop refreshing); only a ``deferred``
job still changes: cancelling it withdraws its queued row."""


class Job(Base):
    """An on-demand job (bulk operation, export, send, anything sent through the HTTP API).

    ``job_id`` is the message id. ``status`` (docs/operations.md, Jobs):

    * ``queued`` — waiting for a worker (also while a retry waits; ``error`` holds the last failure);
    * ``running`` — a worker runs it (``cancel_requested_at`` set: it stops at its next progress report);
    * ``succeeded``; ``failed`` (the actor reported ``{"status": "failed"}``, or no row of a broadcast
      could be sent); ``dead`` (recorded as a dead letter);
    * ``deferred`` — handed to ``notification_queue`` (``result.notification_id``), which sends it later;
    * ``sending`` — a broadcast whose rows the queue consumer is sending; ``progress`` follows them and
      it ends ``succeeded``/``failed``/``cancelled`` with the broadcast's report as ``result``;
    * ``cancelled`` — by ``cancel_requested_by`` (``worker-app jobs cancel``): before it started, at a
      progress report, or (a broadcast) its pending rows were withdrawn.
    """

    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint(f"status IN {JOB_STATUSES}", name="status"),
        Index("ix_jobs_status_created_at", "status", "created_at"),
        # migration 0019: the Bulk page, and the Jobs search's error part (pg_trgm; jobs_query)
        Index("ix_jobs_queue_created_at", "queue_name", "created_at"),
        Index(
            "ix_jobs_error_search", "error", postgresql_using="gin", postgresql_ops={"error": "gin_trgm_ops"}
        ),
    )

    job_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    actor_name: Mapped[str] = mapped_column(String(128), index=True)
    queue_name: Mapped[str] = mapped_column(String(128))
    args: Mapped[list[Any] | None] = mapped_column(JSONB)
    kwargs: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    status: Mapped[str] = mapped_column(String(16), server_default="queued")
    progress: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    result: Mapped[Any | None] = mapped_column(JSONB)
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(server_default="0")
    initiated_by: Mapped[str | None] = mapped_column(String(128))
    trace_id: Mapped[str | None] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now(), index=True)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    cancel_requested_at: Mapped[datetime | None]
    cancel_requested_by: Mapped[str | None] = mapped_column(String(128))


SUBSCRIPTION_ACTION_KINDS = ("disable", "traffic_reset")


class SubscriptionAction(Base):
    """A panel write the subscriptions domain is about to make for one user (worker-owned).

    Written (``done_at`` null) *before* the bulk call and completed — with its notice to the user
    and its ``audit_logs`` row, in one transaction — after it, so a worker killed between the two
    finishes the user on the next run instead of forgetting them (the panel's bulk answers carry no
    per-user result). ``id`` is derived from (kind, user, period): ``period`` is the expiry being
    enforced (``disable``) or the month (``traffic_reset``), so a repeated run inserts nothing twice.
    ``outcome`` says how it ended: ``done``, or ``renewed`` / ``gone`` / ``skipped`` when the user
    changed before the action could be confirmed.
    """

    __tablename__ = "subscription_actions"
    __table_args__ = (
        CheckConstraint(f"kind IN {SUBSCRIPTION_ACTION_KINDS}", name="kind"),
        Index("ix_subscription_actions_open", "kind", "created_at", postgresql_where=text("done_at IS NULL")),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[int] = mapped_column(BigInteger)
    period: Mapped[str] = mapped_column(String(64))
    telegram_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    done_at: Mapped[datetime | None]
    outcome: Mapped[str | None] = mapped_column(String(16))


PAYMENT_ACTIVATION_STATES = ("activating", "completed", "review")


class PaymentActivation(Base):
    """A paid payment being turned into subscription time, exactly once (worker-owned).

    Remnawave's ``extend`` is relative, so a redelivered message calling it again would give a second
    period free. Instead the new absolute ``expireAt`` is computed once — from the user's expiry when
    the payment was first activated (``base_expire_at``) — and stored here, in the transaction that
    locks the ``payments`` row, before the panel is called; the panel is then told that absolute
    date (a repeat changes nothing), and the payment is moved to ``completed`` afterwards. ``state``:
    ``activating`` (computed; the panel may or may not have it yet: ``worker-app payments
    unactivated``), ``completed``, or ``review`` (the invoice does not match the payment: amount,
    asset or status; never activated, ``reason`` says why).
    """

    __tablename__ = "payment_activations"
    __table_args__ = (
        CheckConstraint(f"state IN {PAYMENT_ACTIVATION_STATES}", name="state"),
        Index("ix_payment_activations_open", "created_at", postgresql_where=text("state <> 'completed'")),
    )

    payment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("payments.id"), primary_key=True)
    user_id: Mapped[int] = mapped_column(BigInteger)
    invoice_id: Mapped[str | None] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    days: Mapped[int | None]
    base_expire_at: Mapped[datetime | None]
    new_expire_at: Mapped[datetime | None]
    source: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(server_default="0")
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    completed_at: Mapped[datetime | None]


class BulkBatch(Base):
    """One batch of a bulk user operation (worker-owned): its journal, so a worker killed mid-job
    resumes from its last completed batch instead of doing the job again.

    Inserted (``finished_at`` null) and committed *before* the batch's panel calls; completed with
    its outcome after them. A row found unfinished on redelivery is the batch the worker died in:
    its users are read back from the panel first, and only those not yet done are sent again (the
    panel's bulk answers carry no per-user result, and ``extend`` is relative). ``operation_id`` is
    the job id (the first message's id: a replay of its dead letter continues the same journal).
    ``failed`` lists ``{"user_id", "error"}``; ``verified`` counts users found done on resumption;
    ``expire_before`` (``extend`` only) holds each user's expiry before the batch, by id, so a user
    read back after a crash shows whether the relative extension was applied.
    """

    __tablename__ = "bulk_batches"

    operation_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    batch_no: Mapped[int] = mapped_column(primary_key=True)
    size: Mapped[int]
    started_at: Mapped[datetime] = mapped_column(server_default=func.now())
    finished_at: Mapped[datetime | None]
    succeeded: Mapped[int] = mapped_column(server_default="0")
    failed: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))
    verified: Mapped[int] = mapped_column(server_default="0")
    calls: Mapped[int] = mapped_column(server_default="0")
    expire_before: Mapped[dict[str, str] | None] = mapped_column(JSONB)


class QueuePause(Base):
    """A paused queue (worker-owned): while its row exists no worker takes new messages from it or its
    delay queue (``worker-app queues pause``; :mod:`worker_app.pauses`). A row, not a Redis key: a
    pause must outlive a Redis restart as well as any worker's."""

    __tablename__ = "queue_pauses"

    queue: Mapped[str] = mapped_column(String(64), primary_key=True)
    paused_at: Mapped[datetime] = mapped_column(server_default=func.now())
    paused_by: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str | None] = mapped_column(Text)


class IdempotencyKey(Base):
    """An Idempotency-Key of a job-creating API request, for 24 h (:mod:`worker_app.idempotency`)."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (
        CheckConstraint("state IN ('pending', 'done')", name="state"),
        CheckConstraint("(state = 'done') = (job_id IS NOT NULL)", name="done_has_job"),
    )

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    scope: Mapped[str] = mapped_column(String(128))
    body_hash: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), server_default="pending")
    job_id: Mapped[str | None] = mapped_column(String(64))
    owner: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now(), index=True)
