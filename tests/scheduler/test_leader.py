"""The advisory-lock leader against real PostgreSQL: one holder, takeover, loss stops firing."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest

from scheduler.fire import conninfo
from scheduler.leader import LeaderLock, NotLeader, holders


@pytest.fixture
def lock_name() -> str:
    return f"test-lock-{uuid.uuid4().hex[:8]}"


def make(url: str, name: str, process: str) -> LeaderLock:
    return LeaderLock(conninfo(url), name, process)


def test_exactly_one_process_leads_and_a_standby_takes_over_when_it_goes(
    scheduler_tables: str, lock_name: str, pg: psycopg.Connection[Any]
) -> None:
    a, b = make(scheduler_tables, lock_name, "host:1"), make(scheduler_tables, lock_name, "host:2")
    try:
        assert a.poll() is True
        assert b.poll() is False
        assert a.poll() is True, "the leader keeps its lock"
        seen = holders(pg, lock_name)
        assert [(h.application_name, h.leader) for h in seen] == [
            (f"{lock_name} host:1", True), (f"{lock_name} host:2", False),
        ]  # fmt: skip
        a.release()
        assert b.poll() is True
        with pytest.raises(NotLeader), a.connection():
            pass
    finally:
        a.release()
        b.release()


def test_a_leader_whose_session_is_killed_stops_at_once_and_another_takes_over(
    scheduler_tables: str, lock_name: str, pg: psycopg.Connection[Any]
) -> None:
    a, b = make(scheduler_tables, lock_name, "host:1"), make(scheduler_tables, lock_name, "host:2")
    try:
        assert a.poll() and not b.poll()
        pg.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            (f"{lock_name} host:1",),
        )
        with pytest.raises(psycopg.OperationalError), a.connection() as conn:  # a fire on the lost lock
            conn.execute("SELECT 1")
        assert a.is_leader is False
        with pytest.raises(NotLeader), a.connection():
            pass
        assert b.poll() is True
        assert a.poll() is False, "the old leader comes back as a standby"
    finally:
        a.release()
        b.release()


def test_an_unreachable_database_means_standby(lock_name: str) -> None:
    lock = LeaderLock("host=127.0.0.1 port=1 user=postgres connect_timeout=1", lock_name, "host:1")
    assert lock.poll() is False
    assert lock.last_error
