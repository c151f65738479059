"""Tier 2: one database session per message, closed after it; uncommitted work never leaks."""

from __future__ import annotations

import dramatiq
import redis
import sqlalchemy as sa
from dramatiq.brokers.stub import StubBroker

from models import AuditLog
from worker_app.runtime import get_runtime


def test_each_message_gets_its_own_session_and_uncommitted_work_is_rolled_back(
    stub_broker: StubBroker, stub_worker: dramatiq.Worker, clean_tables: sa.Engine, redis_client: redis.Redis
) -> None:
    # Given an actor that commits one row and leaves another uncommitted
    @dramatiq.actor(queue_name="cleanup", broker=stub_broker)
    def audit(action: str, commit: bool) -> None:
        session = get_runtime().database.message_session()
        redis_client.rpush("sessions", session.hash_key)
        session.add(AuditLog(actor="worker", action=action))
        if commit:
            session.commit()

    # When two messages run
    audit.send("kept", True)
    stub_broker.join("cleanup")
    stub_worker.join()
    audit.send("forgotten", False)
    stub_broker.join("cleanup")
    stub_worker.join()

    # Then only the committed row exists, and the two messages had different sessions
    with clean_tables.connect() as conn:
        actions = conn.execute(sa.text("SELECT action FROM audit_logs")).scalars().all()
    assert actions == ["kept"]
    first, second = redis_client.lrange("sessions", 0, -1)
    assert first != second
