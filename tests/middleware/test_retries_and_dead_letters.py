"""Tier 2: retry policy and dead-letter recording through the real middleware on the StubBroker."""

from __future__ import annotations

from typing import Any

import dramatiq
import pytest
import sqlalchemy as sa
from dramatiq.brokers.stub import StubBroker

from tests.fixtures.stub import DelayCapturingStubBroker, run_until_idle
from worker_app.errors import PermanentError, RateLimited, UpstreamUnavailable
from worker_app.policies import POLICIES, Defer, RetryPolicy


def dead_letters(engine: sa.Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(sa.text("SELECT * FROM dead_letters ORDER BY id")))


def test_permanent_error_is_recorded_dead_with_traceback_after_zero_retries(
    stub_broker: StubBroker, stub_worker: dramatiq.Worker, clean_tables: sa.Engine
) -> None:
    # Given an actor on a domain queue that raises a permanent error
    @dramatiq.actor(queue_name="payments", broker=stub_broker)
    def refuse_payment(payment_id: int) -> None:
        raise PermanentError(f"payment {payment_id} belongs to nobody")

    # When it runs
    refuse_payment.send(7)
    stub_broker.join("payments", fail_fast=False)
    stub_worker.join()

    # Then it is dead at once: one row with the final traceback, nothing waiting for a retry
    [row] = dead_letters(clean_tables)
    assert row.reason == "permanent_error"
    assert row.attempts == 1
    assert row.actor_name == "refuse_payment" and row.queue_name == "payments"
    assert row.args == [7]
    assert row.exception_type == "worker_app.errors.PermanentError"
    assert "payment 7 belongs to nobody" in row.exception_message
    assert 'raise PermanentError(f"payment {payment_id} belongs to nobody")' in row.traceback
    assert stub_broker.dead_letters_by_queue["payments"]


@pytest.mark.parametrize("queue", sorted(POLICIES))
def test_transient_error_is_retried_with_its_domains_backoff(
    capturing_broker: DelayCapturingStubBroker, clean_tables: sa.Engine, queue: str
) -> None:
    # Given a failing actor on each domain queue
    policy = POLICIES[queue]

    @dramatiq.actor(queue_name=queue, broker=capturing_broker, actor_name=f"flaky_{queue}")
    def flaky() -> None:
        raise UpstreamUnavailable("panel answered 502")

    # When it fails every time (each delayed retry released at once instead of after its delay)
    message = flaky.send()
    delays = []
    for _ in range(policy.max_retries + 1):
        run_until_idle(capturing_broker, queue)
        if not capturing_broker.held:
            break
        retry, delay = capturing_broker.held.pop()
        delays.append(delay)
        capturing_broker.enqueue(retry)

    # Then every retry was delayed as the policy says, and the last failure is recorded dead
    expected = [policy.delay_ms(n) for n in range(1, policy.max_retries + 1)]
    assert delays == [d for d in expected if d > 0]
    [row] = dead_letters(clean_tables)
    assert row.message_id == message.message_id
    assert row.reason == "retries_exhausted"
    assert row.attempts == policy.max_retries + 1
    assert "panel answered 502" in row.exception_message


def test_rate_limited_retry_waits_the_servers_delay_and_does_not_count_as_an_attempt(
    capturing_broker: DelayCapturingStubBroker, clean_tables: sa.Engine
) -> None:
    # Given an actor told by its upstream to come back in 7 seconds
    @dramatiq.actor(queue_name="reports", broker=capturing_broker)
    def throttled() -> None:
        raise RateLimited("slow down", retry_after_s=7)

    # When it runs
    throttled.send()
    run_until_idle(capturing_broker, "reports")

    # Then it is delayed by exactly that, with its retry counter untouched
    [(retry, delay)] = capturing_broker.held
    assert delay == 7000
    assert retry.options.get("retries", 0) == 0
    assert retry.options["rate_limited"] == 1
    assert dead_letters(clean_tables) == []


def test_actor_policy_override_and_defer_action(
    stub_broker: StubBroker, stub_worker: dramatiq.Worker, clean_tables: sa.Engine, redis_client: Any
) -> None:
    # Given an actor with its own policy (no retries) whose death defers it to another actor
    @dramatiq.actor(queue_name="notifications", broker=stub_broker)
    def remember_failure(message: dict[str, Any], failure: dict[str, Any]) -> None:
        redis_client.set("exhausted", f"{message['message_id']}:{failure['exception_type']}")

    @dramatiq.actor(
        queue_name="notifications",
        broker=stub_broker,
        retry_policy=RetryPolicy(0, when_exhausted=Defer("remember_failure")),
    )
    def send_once() -> None:
        raise UpstreamUnavailable("telegram down")

    # When it fails
    message = send_once.send()
    stub_broker.join("notifications", fail_fast=False)
    stub_worker.join()

    # Then it is dead without retries and the defer target got the message and the failure
    stub_broker.join("notifications", fail_fast=False)
    stub_worker.join()
    [row] = dead_letters(clean_tables)
    assert row.reason == "retries_exhausted" and row.attempts == 1
    assert redis_client.get("exhausted") == f"{message.message_id}:worker_app.errors.UpstreamUnavailable"


def test_wrong_arguments_are_dead_lettered_as_a_bad_message_without_retry(
    stub_broker: StubBroker, stub_worker: dramatiq.Worker, clean_tables: sa.Engine
) -> None:
    # Given an actor taking one argument
    @dramatiq.actor(queue_name="sync", broker=stub_broker)
    def sync_node(node_uuid: str) -> None:
        raise AssertionError("must not run")

    # When a producer sends it the wrong arguments
    stub_broker.enqueue(sync_node.message_with_options(args=("a", "b"), kwargs={"force": True}))
    stub_broker.join("sync", fail_fast=False)
    stub_worker.join()

    # Then it is dead with a reason naming the signature, and the actor never ran
    [row] = dead_letters(clean_tables)
    assert row.reason == "bad_message"
    assert "arguments do not match sync_node(node_uuid: 'str')" in row.exception_message


def test_unknown_actor_is_dead_lettered_with_a_clear_reason(
    stub_broker: StubBroker, stub_worker: dramatiq.Worker, clean_tables: sa.Engine
) -> None:
    # Given a message for an actor no worker knows
    stub_broker.declare_queue("cleanup")
    message = dramatiq.Message(
        queue_name="cleanup", actor_name="no_such_actor", args=(1,), kwargs={}, options={}
    )

    # When it is consumed
    stub_broker.enqueue(message)
    stub_broker.join("cleanup", fail_fast=False)
    stub_worker.join()

    # Then it is recorded dead as unknown_actor
    [row] = dead_letters(clean_tables)
    assert row.reason == "unknown_actor"
    assert row.actor_name == "no_such_actor"
    assert "no_such_actor" in row.exception_message
