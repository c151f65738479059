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


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / "worker-app"), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


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

    out = cli("dlq", "adopt", "--queue", "payments")
    assert out.returncode == 0, out.stderr
    assert "payments.XQ" in out.stdout and "adopted 2 dead letter(s)" in out.stdout
    with clean_tables.connect() as conn:
        rows = {
            r[0]: r[1:]
            for r in conn.execute(
                sa.text("SELECT message_id, reason, attempts, traceback, trace_id FROM dead_letters")
            )
        }
        note = conn.execute(
            sa.text("SELECT exception_message FROM dead_letters WHERE message_id = :m"), {"m": old.message_id}
        ).scalar_one()
    assert rows[old.message_id] == ("adopted", 3, "Traceback ...\nUpstreamUnavailable: 502", "t-old")
    assert "the traceback is an earlier attempt's" in note
    assert rows["raw-1"][0] == "undecodable"
    assert rows[recorded.message_id][0] == "failed", "an existing record is left alone"
    assert ready_count("payments.XQ") == 3, "the .XQ copies stay"


def test_adopting_the_same_xq_again_and_again_records_each_message_once(
    clean_tables: sa.Engine, rabbitmq_vhost: str
) -> None:
    import worker_app

    # Given an .XQ holding a message that died on its first attempt (no traceback), the same
    # undecodable body twice (no AMQP message id), and a body the worker already recorded
    worker_app.broker.declare_queue("payments", ensure=True)
    purge("payments.XQ")
    fresh = dramatiq.Message(queue_name="payments", actor_name="verify_pending_payments", args=(8,),
                             kwargs={}, options={"trace_id": "t-fresh"})  # fmt: skip
    garbage, recorded_garbage = b"\xffnot a message", b"\xfealready recorded"
    with clean_tables.begin() as conn:
        conn.execute(
            sa.text("""INSERT INTO dead_letters (message_id, queue_name, reason, raw_body, attempts,
                       first_failed_at, last_failed_at)
                       VALUES ('undecodable-by-the-worker', 'payments', 'undecodable', :b, 1, now(),
                       now())"""),
            {"b": recorded_garbage},
        )
    with pika.BlockingConnection(amqp_parameters()) as conn:
        channel = conn.channel()
        for body in (fresh.encode(), garbage, garbage, recorded_garbage):
            channel.basic_publish("", "payments.XQ", body, pika.BasicProperties(delivery_mode=2))

    # When bin/run adopts it at three starts in a row
    runs = [cli("dlq", "adopt", "--queue", "payments") for _ in range(3)]

    # Then the first run records the message and the body once each, the others record nothing
    assert [r.returncode for r in runs] == [0, 0, 0], [r.stderr for r in runs]
    assert ["adopted 2 dead letter(s)" in runs[0].stdout] + [
        "adopted 0 dead letter(s)" in r.stdout for r in runs[1:]
    ] == [True, True, True], [r.stdout for r in runs]
    with clean_tables.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT id, message_id, reason, raw_body FROM dead_letters ORDER BY id")
        ).all()
    assert sorted((r.reason, bytes(r.raw_body or b"")) for r in rows) == sorted(
        [("adopted", b""), ("undecodable", garbage), ("undecodable", recorded_garbage)]
    )
    assert ready_count("payments.XQ") == 4, "the .XQ copies stay, every run"

    # And the adopted message's record says there is no traceback, as `dlq show` then prints
    adopted = next(r for r in rows if r.message_id == fresh.message_id)
    shown = cli("dlq", "show", str(adopted.id))
    assert "no traceback was kept" in shown.stdout and shown.stdout.rstrip().endswith("(no traceback)")
