"""``worker-app dlq list/show/drain`` show what the store recorded."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import redis
import sqlalchemy as sa

from worker_app.dead_letters import SPOOL_KEY, DeadLetterRecord

WORKER_APP = str(Path(sys.executable).parent / "worker-app")


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [WORKER_APP, *args], env=os.environ, capture_output=True, text=True, timeout=60, check=False
    )


def test_operator_lists_and_reads_a_dead_letter_with_its_traceback(
    clean_tables: sa.Engine, redis_client: redis.Redis
) -> None:
    # Given a dead letter spooled while PostgreSQL was down
    now = int(time.time() * 1000)
    spooled = DeadLetterRecord(
        message_id="m-cli",
        queue_name="payments",
        reason="retries_exhausted",
        actor_name="verify_pending",
        args=[3],
        kwargs={},
        exception_type="UpstreamUnavailable",
        exception_message="crypto pay answered 502",
        traceback="Traceback (most recent call last):\n  ...\nUpstreamUnavailable: crypto pay answered 502",
        attempts=4,
        first_failed_at=now,
        last_failed_at=now,
        trace_id="t-cli",
    )
    redis_client.lpush(SPOOL_KEY, spooled.to_json())

    # When the operator drains the spool, lists and shows it
    drained = cli("dlq", "drain")
    listed = cli("dlq", "list", "--queue", "payments")
    with clean_tables.connect() as conn:
        dead_id = conn.execute(sa.text("SELECT id FROM dead_letters WHERE message_id = 'm-cli'")).scalar_one()
    shown = cli("dlq", "show", str(dead_id))

    # Then each answers with the record
    assert "moved 1 spooled dead letter(s)" in drained.stdout
    assert "verify_pending" in listed.stdout and "retries_exhausted" in listed.stdout
    assert '"trace_id": "t-cli"' in shown.stdout
    assert "UpstreamUnavailable: crypto pay answered 502" in shown.stdout
    assert cli("dlq", "show", "999999").returncode == 1
