"""Scenario 7: poison and malformed messages on a live queue are each recorded dead with a reason,
and the worker keeps serving the good message behind them."""

from __future__ import annotations

import json
import os
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pika
import redis
import sqlalchemy as sa

from tests.fixtures.scheduler import amqp_parameters
from tests.fixtures.worker import run_worker, wait_for, wait_until_consuming
from tests.reliability.report import ScenarioReport, report


def message(actor: str, args: list[Any]) -> bytes:
    return json.dumps({
        "queue_name": "analytics", "actor_name": actor, "args": args, "kwargs": {}, "options": {},
        "message_id": str(uuid.uuid4()), "message_timestamp": 0,
    }).encode()  # fmt: skip


def test_poison_messages_are_recorded_dead_and_the_worker_keeps_serving(
    tmp_path: Path, rabbitmq_vhost: str, clean_tables: sa.Engine, redis_client: redis.Redis
) -> None:
    key = f"poison-{uuid.uuid4().hex[:8]}"
    poison = {
        "random bytes": (os.urandom(256), "undecodable"),
        "JSON object of the wrong shape": (b'{"hello": "world"}', "undecodable"),
        "JSON array": (b"[1, 2, 3]", "undecodable"),
        "unknown actor": (message("no_such_actor", []), "unknown_actor"),
        "wrong argument type": (message("e2e_replay_count", [key, "seven"]), "bad_message"),
        "8 MB payload with wrong arguments": (
            message("e2e_replay_count", ["x" * 8_000_000, {"n": 1}]), "bad_message"
        ),
    }  # fmt: skip
    with run_worker(tmp_path / "worker.log", queues=("analytics",)) as worker:
        with pika.BlockingConnection(amqp_parameters()) as conn:
            channel = conn.channel()
            for body, _ in poison.values():
                channel.basic_publish("", "analytics", body, pika.BasicProperties(delivery_mode=2))
            channel.basic_publish(
                "", "analytics", message("e2e_replay_count", [key, 1]), pika.BasicProperties(delivery_mode=2)
            )

        def reasons() -> Counter[str]:
            with clean_tables.connect() as conn:
                return Counter(
                    dict(
                        conn.execute(
                            sa.text("SELECT reason, count(*) FROM dead_letters GROUP BY reason")
                        ).all()
                    )
                )

        expected = Counter(reason for _, reason in poison.values())
        wait_for(lambda: reasons() == expected, 60, f"dead letters {dict(expected)}")
        wait_for(lambda: redis_client.hget(key, "1") == "1", 30, "the good message to run")
        wait_until_consuming(worker, ["analytics"])
        assert worker.proc.poll() is None, "the worker is still alive"
    with clean_tables.connect() as conn:
        texts = [
            r[0]
            for r in conn.execute(
                sa.text("SELECT exception_message FROM dead_letters WHERE reason = 'bad_message'")
            )
        ]
    assert any("n = 'seven': Input should be a valid integer" in t for t in texts)
    report(ScenarioReport(
        scenario="poison and malformed messages", messages=len(poison) + 1, processed=1, lost=0, duplicated=0,
        recovery_s=None, note="; ".join(f"{name} -> {reason}" for name, (_, reason) in poison.items()),
    ))  # fmt: skip
