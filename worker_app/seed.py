"""Demo data for a local run (``worker-app seed``), never for production. Plans and nodes are
inserted once; five demo notifications are queued whenever none is still pending."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import exists, select
from sqlalchemy.dialects.postgresql import insert

from models import NotificationQueue, ServerGeolocation, SubscriptionPlan
from worker_app.db import Database

DEMO_PLANS = [
    {"name": "1 month", "duration_days": 30, "price": Decimal("4.99"), "currency": "USD"},
    {"name": "3 months", "duration_days": 90, "price": Decimal("12.99"), "currency": "USD"},
    {"name": "12 months", "duration_days": 365, "price": Decimal("39.99"), "currency": "USD"},
]
DEMO_NODES = [
    {
        "node_uuid": "00000000-0000-4000-8000-000000000001",
        "name": "Amsterdam-1",
        "country_code": "NL",
        "country": "Netherlands",
        "city": "Amsterdam",
        "latitude": 52.37,
        "longitude": 4.90,
    },
    {
        "node_uuid": "00000000-0000-4000-8000-000000000002",
        "name": "Frankfurt-1",
        "country_code": "DE",
        "country": "Germany",
        "city": "Frankfurt",
        "latitude": 50.11,
        "longitude": 8.68,
    },
]


DEMO_NOTIFICATIONS = [
    {
        "telegram_id": 1001,
        "notification_type": "demo",
        "message": "<b>Welcome to CyberVPN!</b> Your trial is active.",
    },
    {
        "telegram_id": 1002,
        "notification_type": "demo",
        "message": "Your subscription expires in <b>3 days</b>.",
    },
    {"telegram_id": 1003, "notification_type": "demo", "message": "Payment received: 12 months, thank you!"},
    {
        "telegram_id": 1004,
        "notification_type": "demo",
        "message": "You have used 80% of this month's traffic.",
    },
    {"telegram_id": 1005, "notification_type": "demo", "message": "Server Amsterdam-1 is back online."},
]


def seed_demo(database: Database) -> dict[str, int]:
    """Insert the demo plans and nodes unless present; how many rows each table gained."""
    with database.transaction() as s:
        plans = s.scalars(
            insert(SubscriptionPlan)
            .values(DEMO_PLANS)
            .on_conflict_do_nothing()
            .returning(SubscriptionPlan.id)
        ).all()
        nodes = s.scalars(
            insert(ServerGeolocation)
            .values(DEMO_NODES)
            .on_conflict_do_nothing()
            .returning(ServerGeolocation.id)
        ).all()
        demo_waiting = s.scalar(
            select(
                exists().where(
                    NotificationQueue.notification_type == "demo", NotificationQueue.status == "pending"
                )
            )
        )
        if not demo_waiting:  # a new round each run, so every `bin/run` shows the send flow
            s.execute(insert(NotificationQueue).values(DEMO_NOTIFICATIONS))
    added_notifications = 0 if demo_waiting else len(DEMO_NOTIFICATIONS)
    return {
        "subscription_plans": len(plans),
        "server_geolocations": len(nodes),
        "notification_queue": added_notifications,
    }
