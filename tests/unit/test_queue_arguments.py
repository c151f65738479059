"""Declaration arguments per queue kind and type (``worker_app.queue_arguments``).

The classic values are the ones Dramatiq and this broker declared before queue types existed:
a deployment's queues keep them, or every restart would fail with ``inequivalent arg``.
"""

from __future__ import annotations

import pytest

from worker_app.broker import CyberRabbitmqBroker
from worker_app.queue_arguments import QUORUM_DELIVERY_LIMIT, QueueKind, QueueType, queue_arguments

RETENTION_MS = 30 * 86_400_000
HOLD_MS = 300_000


def arguments(kind: QueueKind, queue_type: QueueType, queue_name: str = "payments") -> dict[str, object]:
    return queue_arguments(
        kind, queue_type, queue_name=queue_name, dead_message_ttl_ms=RETENTION_MS, max_hold_ms=HOLD_MS
    )


def test_classic_queues_keep_the_arguments_they_were_declared_with() -> None:
    # Given the classic type (the default), When each kind's arguments are asked for, Then they are
    # Dramatiq's (dead-letter into .XQ), our .XQ retention and the hold queue's TTL, and no more
    to_xq = {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "payments.XQ"}
    assert arguments(QueueKind.DOMAIN, "classic") == to_xq
    assert arguments(QueueKind.DELAY, "classic") == to_xq
    assert arguments(QueueKind.DEAD, "classic") == {"x-message-ttl": RETENTION_MS}
    assert arguments(QueueKind.HOLD, "classic") == {"x-message-ttl": HOLD_MS, "x-dead-letter-exchange": ""}


def test_quorum_work_queues_dead_letter_at_least_once_with_a_high_delivery_limit() -> None:
    # Given the quorum type, When a domain queue's and its .DQ's arguments are asked for
    expected = {
        "x-queue-type": "quorum",
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": "payments.XQ",
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",  # at-least-once falls back to at-most-once without it
        "x-delivery-limit": 1000,
    }
    # Then both dead-letter into .XQ at least once, with the delivery limit as a distant backstop
    assert arguments(QueueKind.DOMAIN, "quorum") == expected
    assert arguments(QueueKind.DELAY, "quorum") == expected
    assert QUORUM_DELIVERY_LIMIT >= 100


def test_quorum_dead_letter_queue_keeps_its_retention_and_has_no_delivery_limit() -> None:
    # Given the quorum type, When the .XQ's arguments are asked for, Then it is quorum with the
    # retention TTL only: with no dead-letter target, a delivery limit would drop dead letters
    assert arguments(QueueKind.DEAD, "quorum") == {"x-queue-type": "quorum", "x-message-ttl": RETENTION_MS}


def test_quorum_hold_queue_returns_parked_messages_at_least_once() -> None:
    # Given the quorum type, When the hold queue's arguments are asked for, Then expired messages go
    # back (with their own routing key: no x-dead-letter-routing-key) at least once
    assert arguments(QueueKind.HOLD, "quorum") == {
        "x-queue-type": "quorum",
        "x-message-ttl": HOLD_MS,
        "x-dead-letter-exchange": "",
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


@pytest.mark.parametrize("kind", list(QueueKind))
@pytest.mark.parametrize("queue_type", ["classic", "quorum"])
def test_no_queue_is_ever_declared_with_a_priority(kind: QueueKind, queue_type: QueueType) -> None:
    # Given any kind and type, When its arguments are asked for, Then there is no x-max-priority
    # (a quorum queue refuses it: PRECONDITION_FAILED closes the channel)
    assert "x-max-priority" not in arguments(kind, queue_type)


def test_a_delay_queue_name_dead_letters_into_its_domains_xq() -> None:
    # Given a .DQ name (Dramatiq passes canonical names; xq_name takes both), Then the domain's .XQ
    assert arguments(QueueKind.DELAY, "quorum", "sync.DQ")["x-dead-letter-routing-key"] == "sync.XQ"


@pytest.mark.parametrize("queue_type", ["classic", "quorum"])
def test_the_broker_declares_with_the_function_of_its_type_and_bounds(queue_type: QueueType) -> None:
    # Given a broker (building one does no I/O) of either type
    broker = CyberRabbitmqBroker(
        url="amqp://guest:guest@127.0.0.1:5672/%2F",
        middleware=[],
        max_hold_ms=HOLD_MS,
        dead_message_ttl_ms=RETENTION_MS,
        queue_type=queue_type,
    )
    # Then what it declares for each kind is the function's answer for its type and bounds
    for kind in QueueKind:
        assert broker.arguments_for(kind, "payments") == arguments(kind, queue_type)


def test_a_broker_built_without_a_type_is_classic() -> None:
    # Given a broker built as before queue types existed, Then it declares classic queues
    broker = CyberRabbitmqBroker(url="amqp://127.0.0.1/", middleware=[], max_hold_ms=9, dead_message_ttl_ms=9)
    assert broker.queue_type == "classic"
