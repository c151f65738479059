"""The scheduler's tables: one row per fire, and the leader's view of every job."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, Index, String, Text, func, text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base

FIRE_STATUSES = ("enqueued", "skipped", "started")
FIRE_KINDS = ("scheduled", "catch_up", "immediate", "manual", "backfill")


class SchedulerFire(Base):
    """One scheduled time of one job: the identity that makes a fire happen at most once.

    The scheduler inserts the row and publishes the message in one transaction; the worker marks
    it ``started`` before the actor runs and drops any other message of the same (job, time).
    """

    __tablename__ = "scheduler_fires"
    __table_args__ = (
        CheckConstraint(f"status IN {FIRE_STATUSES}", name="status"),
        CheckConstraint(f"kind IN {FIRE_KINDS}", name="kind"),
        Index(
            "ix_scheduler_fires_waiting", "job", "scheduled_at", postgresql_where=text("status = 'enqueued'")
        ),
    )

    job: Mapped[str] = mapped_column(String(64), primary_key=True)
    scheduled_at: Mapped[datetime] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), server_default="scheduled")
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    message_id: Mapped[str | None] = mapped_column(String(64))
    trace_id: Mapped[str | None] = mapped_column(String(64))
    fired_at: Mapped[datetime] = mapped_column(server_default=func.now())
    fired_by: Mapped[str | None] = mapped_column(String(128))
    started_at: Mapped[datetime | None]
    started_message_id: Mapped[str | None] = mapped_column(String(64))
    duplicates_dropped: Mapped[int] = mapped_column(server_default="0")


class SchedulerJob(Base):
    """The leader's effective schedule of one job (after env overrides), for ``worker-app schedules``."""

    __tablename__ = "scheduler_jobs"

    job: Mapped[str] = mapped_column(String(64), primary_key=True)
    actor: Mapped[str] = mapped_column(String(128))
    queue: Mapped[str | None] = mapped_column(String(64))
    schedule: Mapped[str] = mapped_column(String(128))
    jitter_s: Mapped[int] = mapped_column(server_default="0")
    grace_s: Mapped[int] = mapped_column(server_default="0")
    immediate: Mapped[bool] = mapped_column(server_default="false")
    enabled: Mapped[bool]
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_by: Mapped[str | None] = mapped_column(String(128))
