"""Plans, payments and payment-provider webhooks (backend-owned tables)."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, Numeric, String, Text, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, CreatedAt, Timestamps

PAYMENT_STATUSES = ("pending", "completed", "failed", "expired")


class SubscriptionPlan(Timestamps, Base):
    """A purchasable plan: how many days of VPN for which price."""

    __tablename__ = "subscription_plans"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, server_default=func.gen_random_uuid())
    name: Mapped[str] = mapped_column(String(64), unique=True)
    duration_days: Mapped[int]
    price: Mapped[Decimal] = mapped_column(Numeric(18, 2))
    currency: Mapped[str] = mapped_column(String(8))
    traffic_limit_bytes: Mapped[int | None] = mapped_column(BigInteger)
    is_active: Mapped[bool] = mapped_column(server_default="true")


class Payment(Timestamps, Base):
    """A payment through a provider; ``external_id`` is the provider's invoice id."""

    __tablename__ = "payments"
    __table_args__ = (
        CheckConstraint(f"status IN {PAYMENT_STATUSES}", name="status"),
        # aggregate_financial_stats: completed payments by the day they were paid (migration 0012).
        Index("ix_payments_completed_paid_at", "paid_at", postgresql_where=text("status = 'completed'")),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, server_default=func.gen_random_uuid())
    user_id: Mapped[int] = mapped_column(BigInteger, index=True)
    telegram_id: Mapped[int | None] = mapped_column(BigInteger)
    plan_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("subscription_plans.id"))
    provider: Mapped[str] = mapped_column(String(32), server_default="cryptobot")
    external_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    amount: Mapped[Decimal] = mapped_column(Numeric(24, 8))
    currency: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), server_default="pending", index=True)
    subscription_days: Mapped[int | None]
    paid_at: Mapped[datetime | None]
    error_message: Mapped[str | None] = mapped_column(Text)


class WebhookLog(CreatedAt, Base):
    """A webhook as received, kept for audit and for re-processing (``retry_failed_webhooks``)."""

    __tablename__ = "webhook_logs"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, server_default=func.gen_random_uuid())
    source: Mapped[str] = mapped_column(String(32))
    event_type: Mapped[str] = mapped_column(String(64))
    external_id: Mapped[str | None] = mapped_column(String(64), index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    signature: Mapped[str | None] = mapped_column(String(256))
    is_valid: Mapped[bool] = mapped_column(server_default="false")
    processed_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(server_default="0")
    error_message: Mapped[str | None] = mapped_column(Text)


class AutoRenewSetting(Timestamps, Base):
    """A user's auto-renew preference: ``auto_renew_subscriptions`` invoices them for ``plan_id`` when
    their subscription ends within the hour. The backend's schema for it was not given: this table is
    the worker's proposal (one row per Remnawave user id; the backend writes it when a user turns
    auto-renew on or off)."""

    __tablename__ = "auto_renew_settings"

    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    telegram_id: Mapped[int | None] = mapped_column(BigInteger)
    plan_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("subscription_plans.id"))
    enabled: Mapped[bool] = mapped_column(server_default="true")
