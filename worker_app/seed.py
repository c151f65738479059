"""Demo data for a local run (``worker-app seed``): idempotent, never for production."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy.dialects.postgresql import insert

from models import ServerGeolocation, SubscriptionPlan
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
    return {"subscription_plans": len(plans), "server_geolocations": len(nodes)}
