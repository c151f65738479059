"""SQLAlchemy 2 models: the worker's own copies of the backend tables it touches, and its own tables.

Importing this package registers every table on :data:`Base.metadata` (used by Alembic and by
``worker-app db check``).
"""

from __future__ import annotations

from models.base import Base
from models.billing import AutoRenewSetting, Payment, SubscriptionPlan, WebhookLog
from models.notifications import NotificationBroadcast, NotificationBroadcastItem, NotificationQueue
from models.scheduler import SchedulerFire, SchedulerJob
from models.security import AuditLog, RefreshToken
from models.servers import ServerGeolocation
from models.worker import (
    BulkBatch,
    DeadLetter,
    IdempotencyKey,
    Job,
    PaymentActivation,
    QueuePause,
    SubscriptionAction,
)

__all__ = [
    "AuditLog",
    "AutoRenewSetting",
    "Base",
    "BulkBatch",
    "DeadLetter",
    "IdempotencyKey",
    "Job",
    "NotificationBroadcast",
    "NotificationBroadcastItem",
    "NotificationQueue",
    "Payment",
    "PaymentActivation",
    "QueuePause",
    "RefreshToken",
    "SchedulerFire",
    "SchedulerJob",
    "ServerGeolocation",
    "SubscriptionAction",
    "SubscriptionPlan",
    "WebhookLog",
]
