"""Tier 2: trace ids travel with messages, into log lines and into the messages an actor sends."""

from __future__ import annotations

import json
import logging
from typing import Any

import dramatiq
import pytest
import redis
from dramatiq.brokers.stub import StubBroker

from worker_app import context
from worker_app.logging_setup import ContextFilter, JsonFormatter


def test_trace_id_is_kept_across_messages_an_actor_sends(
    stub_broker: StubBroker, stub_worker: dramatiq.Worker, redis_client: redis.Redis
) -> None:
    # Given a parent actor that sends a child message
    @dramatiq.actor(queue_name="sync", broker=stub_broker)
    def child() -> None:
        redis_client.set("child_trace", context.current_trace_id() or "")

    @dramatiq.actor(queue_name="sync", broker=stub_broker)
    def parent() -> None:
        redis_client.set("parent_trace", context.current_trace_id() or "")
        child.send()

    # When the producer sets a trace id
    parent.send_with_options(trace_id="trace-from-the-backend")
    stub_broker.join("sync")
    stub_worker.join()

    # Then both ran with it
    assert redis_client.get("parent_trace") == "trace-from-the-backend"
    assert redis_client.get("child_trace") == "trace-from-the-backend"


def test_a_message_without_trace_id_gets_one_and_it_is_cleared_after(
    stub_broker: StubBroker, stub_worker: dramatiq.Worker, redis_client: redis.Redis
) -> None:
    @dramatiq.actor(queue_name="sync", broker=stub_broker)
    def traced() -> None:
        redis_client.set("trace", context.current_trace_id() or "")

    message = traced.send()
    stub_broker.join("sync")
    stub_worker.join()

    assert redis_client.get("trace") == message.options["trace_id"]
    assert len(message.options["trace_id"]) == 32
    assert context.current() is None


def test_each_processed_message_is_one_json_line_with_its_context(
    stub_broker: StubBroker, stub_worker: dramatiq.Worker, caplog: pytest.LogCaptureFixture
) -> None:
    # Given JSON logging with the context filter
    caplog.handler.addFilter(ContextFilter())
    caplog.handler.setFormatter(JsonFormatter())

    @dramatiq.actor(queue_name="reports", broker=stub_broker)
    def report() -> None:
        logging.getLogger("reports").info("building")

    # When a message runs
    with caplog.at_level(logging.INFO):
        message = report.send_with_options(trace_id="t-42")
        stub_broker.join("reports")
        stub_worker.join()

    # Then the actor's own line and the completion line carry the message's context
    lines = [
        json.loads(caplog.handler.format(r))
        for r in caplog.records
        if r.name in ("reports", "worker_app.messages")
    ]
    by_logger: dict[str, Any] = {line["logger"]: line for line in lines}
    assert by_logger["reports"]["trace_id"] == "t-42"
    done = by_logger["worker_app.messages"]
    assert {k: done[k] for k in ("actor", "queue", "message_id", "trace_id", "attempt", "outcome")} == {
        "actor": "report",
        "queue": "reports",
        "message_id": message.message_id,
        "trace_id": "t-42",
        "attempt": 1,
        "outcome": "success",
    }
    assert isinstance(done["duration_ms"], float)
