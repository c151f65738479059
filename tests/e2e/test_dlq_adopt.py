"""``worker-app dlq adopt``: dead messages found in a .XQ without a record are recorded, and stay."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import dramatiq
import pika
import sqlalchemy as sa

from tests.fixtures.scheduler import amqp_parameters, purge, ready_count
from tests.fixtures.worker import ROOT


def test_messages_in_xq_without_a_record_are_adopted_and_stay_in_the_queue(
    clean_tables: sa.Engine, rabbitmq_vhost: str
) -> None:
    import worker_app

    worker_app.broker.declare_queue("payments", ensure=True)
    purge("payments.XQ")
    old = dramatiq.Message(
        queue_name="payments", actor_name="verify_pending_payments", args=(7,), kwargs={},
        options={"retries": 2, "traceback": "Traceback ...\nUpstreamUnavailable: 502", "trace_id": "t-old"},
    )  # fmt: skip
    recorded = dramatiq.Message(queue_name="payments", actor_name="x", args=(), kwargs={}, options={})
    with clean_tables.begin() as conn:
        conn.execute(
            sa.text("""INSERT INTO dead_letters (message_id, queue_name, reason, attempts, first_failed_at,
                       last_failed_at) VALUES (:m, 'payments', 'failed', 1, now(), now())"""),
            {"m": recorded.message_id},
        )
    with pika.BlockingConnection(amqp_parameters()) as conn:
        channel = conn.channel()
        for body, message_id in ((old.encode(), None), (recorded.encode(), None), (b"\x00not json", "raw-1")):
            channel.basic_publish("", "payments.XQ", body, pika.BasicProperties(message_id=message_id))

    out = subprocess.run(
        [str(Path(sys.executable).parent / "worker-app"), "dlq", "adopt", "--queue", "payments"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "payments.XQ" in out.stdout and "adopted 2 dead letter(s)" in out.stdout
    with clean_tables.connect() as conn:
        rows = {
            r[0]: r[1:]
            for r in conn.execute(
                sa.text("SELECT message_id, reason, attempts, traceback, trace_id FROM dead_letters")
            )
        }
    assert rows[old.message_id] == ("adopted", 3, "Traceback ...\nUpstreamUnavailable: 502", "t-old")
    assert rows["raw-1"][0] == "undecodable"
    assert rows[recorded.message_id][0] == "failed", "an existing record is left alone"
    assert ready_count("payments.XQ") == 3, "the .XQ copies stay"
