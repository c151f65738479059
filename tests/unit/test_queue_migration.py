"""The pure parts of ``worker_app.queue_migration``: the target's URLs and declarations, and the check
that every queue's counts add up after a move (tests/e2e/test_queue_migration.py moves real messages)."""

from __future__ import annotations

from worker_app.queue_arguments import QueueKind, queue_arguments
from worker_app.queue_migration import Deployment, MigrationResult, QueueResult, target_arguments

RETENTION_MS = 30 * 86_400_000
HOLD_MS = 300_000
NODES = [
    "amqp://app:s%40cret@rabbit-1:5672/cybervpn?heartbeat=30",
    "amqp://app:s%40cret@rabbit-2:5672/cybervpn",
]


def deployment(urls: list[str] = NODES) -> Deployment:
    return Deployment(urls, "http://rabbit-1:15672", RETENTION_MS, HOLD_MS)


def result(*queues: QueueResult, kept: list[str] | None = None) -> MigrationResult:
    return MigrationResult(created_vhost=True, queues=list(queues), kept=kept or [])


def test_the_target_urls_change_only_the_vhost_of_every_node() -> None:
    assert deployment().vhost == "cybervpn"
    assert deployment().urls_for("cybervpn/quorum") == [
        "amqp://app:s%40cret@rabbit-1:5672/cybervpn%2Fquorum?heartbeat=30",
        "amqp://app:s%40cret@rabbit-2:5672/cybervpn%2Fquorum",
    ]
    assert deployment(["amqp://guest:guest@localhost:5672/%2F"]).vhost == "/"


def test_the_target_declares_each_queue_as_the_quorum_broker_would() -> None:
    # Given the broker's settings, When each of our queues' target declaration is asked for
    def broker(kind: QueueKind, max_hold_ms: int = HOLD_MS) -> dict[str, object]:
        return queue_arguments(kind, "quorum", queue_name="payments", dead_message_ttl_ms=RETENTION_MS,
                               max_hold_ms=max_hold_ms)  # fmt: skip

    # Then it is queue_arguments' quorum answer for the queue's kind
    assert target_arguments(deployment(), "payments") == broker(QueueKind.DOMAIN)
    assert target_arguments(deployment(), "payments.DQ") == broker(QueueKind.DELAY)
    assert target_arguments(deployment(), "payments.XQ") == broker(QueueKind.DEAD)
    assert target_arguments(deployment(), f"cybervpn.hold.{HOLD_MS}ms") == broker(QueueKind.HOLD)
    # And a hold queue left by another DELAY_MAX_HOLD_MS keeps the bound its name says
    assert target_arguments(deployment(), "cybervpn.hold.2000ms")["x-message-ttl"] == 2000


def test_counts_that_add_up_are_accepted_even_when_a_held_message_expired_into_its_dq_meanwhile() -> None:
    # Given a held message that expired into payments.DQ after the plan and was moved from there
    moved = result(
        QueueResult("cybervpn.hold.300000ms", QueueKind.HOLD, planned=5, moved=4, source_now=0, target_now=4),
        QueueResult("payments.DQ", QueueKind.DELAY, planned=10, moved=11, source_now=0, target_now=11),
        QueueResult("payments", QueueKind.DOMAIN, planned=3, moved=3, source_now=0, target_now=3),
    )
    # Then nothing is reported
    assert (moved.imbalances(), moved.ok, moved.moved) == ([], True, 18)


def test_a_message_arriving_or_vanishing_during_the_move_fails_it_naming_the_queue() -> None:
    # Given one message published to sync during the move and one taken from payments.XQ by a consumer
    moved = result(
        QueueResult("sync", QueueKind.DOMAIN, planned=3, moved=3, source_now=1, target_now=3),
        QueueResult("payments.XQ", QueueKind.DEAD, planned=3, moved=2, source_now=0, target_now=2),
    )
    # Then both are reported, and the result is not ok
    problems = moved.imbalances()
    assert problems[0].startswith("sync: 1 message(s) arrived in the source during the move")
    assert problems[1].startswith("payments.XQ: 1 message(s) left the source other than by this move")
    assert not moved.ok


def test_an_old_queue_that_could_not_be_deleted_fails_the_result() -> None:
    kept = result(kept=["sync (PRECONDITION_FAILED - queue 'sync' in vhost 'v' not empty)"])
    assert kept.imbalances() == [] and not kept.ok
