"""``notification_queue``: Telegram messages the backend wants delivered (backend-owned table), and
the worker's own record of broadcasts (which rows each broadcast inserted, and its final report)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, String, Text, func, text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, CreatedAt, Timestamps

NOTIFICATION_STATUSES = ("pending", "sent", "failed")


class NotificationQueue(Timestamps, Base):
    """One message to one chat. ``pending`` rows are due when ``next_attempt_at`` (or, before the
    first attempt, ``scheduled_at``) has passed; ``attempts`` counts failed sends."""

    __tablename__ = "notification_queue"
    __table_args__ = (
        CheckConstraint(f"status IN {NOTIFICATION_STATUSES}", name="status"),
        Index(
            "ix_notification_queue_due",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
        ),
        # cleanup_old_notifications walks settled rows by created_at (migration 0013)
        Index(
            "ix_notification_queue_settled_created_at",
            "created_at",
            postgresql_where=text("status IN ('sent', 'failed')"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, server_default=func.gen_random_uuid())
    telegram_id: Mapped[int] = mapped_column(BigInteger, index=True)
    message: Mapped[str] = mapped_column(Text)
    notification_type: Mapped[str] = mapped_column(String(64))
    parse_mode: Mapped[str | None] = mapped_column(String(16), server_default="HTML")
    status: Mapped[str] = mapped_column(String(16), server_default="pending")
    attempts: Mapped[int] = mapped_column(server_default="0")
    scheduled_at: Mapped[datetime] = mapped_column(server_default=func.now())
    next_attempt_at: Mapped[datetime] = mapped_column(server_default=func.now())
    sent_at: Mapped[datetime | None]
    error_message: Mapped[str | None] = mapped_column(Text)
    telegram_message_id: Mapped[int | None] = mapped_column(BigInteger)


class NotificationBroadcast(CreatedAt, Base):
    """One ``broadcast_message`` call (worker-owned); its id is the Dramatiq message id, which
    makes a redelivered broadcast insert nothing twice. ``settled_at`` and the counts are written
    once, when none of its rows is ``pending`` any more. A cancelled broadcast (``cancelled_at``,
    ``cancelled_by``) has its pending rows marked ``failed`` with ``error_message`` "cancelled by
    <who>" — ``notification_queue`` is the backend's, its statuses stay — and counted in ``cancelled``
    (so ``failed`` = failed rows - ``cancelled``)."""

    __tablename__ = "notification_broadcasts"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    notification_type: Mapped[str] = mapped_column(String(64))
    total: Mapped[int]
    duplicates_removed: Mapped[int] = mapped_column(server_default="0")
    trace_id: Mapped[str | None] = mapped_column(String(64))
    settled_at: Mapped[datetime | None]
    sent: Mapped[int | None]
    failed: Mapped[int | None]
    cancelled_at: Mapped[datetime | None]
    cancelled_by: Mapped[str | None] = mapped_column(String(128))
    cancelled: Mapped[int] = mapped_column(server_default="0")
    #: A scheduled broadcast's start (its rows' ``scheduled_at``); null: sent at once.
    starts_at: Mapped[datetime | None]


class NotificationBroadcastItem(Base):
    """Which ``notification_queue`` row belongs to which broadcast (worker-owned)."""

    __tablename__ = "notification_broadcast_items"

    notification_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    broadcast_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("notification_broadcasts.id", ondelete="CASCADE"), index=True
    )
