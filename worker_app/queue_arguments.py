"""The arguments each queue is declared with, for each ``RABBITMQ_QUEUE_TYPE``.

A queue keeps the arguments of its first declaration: every process that declares it (workers, the
scheduler, the API) must send the same ones or RabbitMQ closes the channel with
``PRECONDITION_FAILED inequivalent arg``, and a queue never changes type in place. Hence one
function, whose answer depends only on the queue type, the ``.XQ`` retention and the hold bound.

``classic`` is what Dramatiq declares (with our ``.XQ`` retention). ``quorum`` (a cluster:
Raft-replicated queues) adds, for RabbitMQ 3.10:

* ``x-dead-letter-strategy: at-least-once`` with ``x-overflow: reject-publish`` on every queue that
  dead-letters (a domain queue and its ``.DQ`` into ``.XQ``, the hold queue back into ``.DQ``). The
  quorum default is at-most-once: a dead letter the target does not take (queue missing, leader
  unavailable) is dropped. At-least-once keeps it in the source queue until the target confirms it;
  under any other overflow setting RabbitMQ falls back to at-most-once with only a log line. With no
  length limit declared, ``reject-publish`` never rejects a publish.
* ``x-delivery-limit`` as a backstop only: RabbitMQ 3.10 counts a message returned by a closed
  channel (a crashed or reconnecting worker's prefetched and held messages) as a delivery, so a low
  limit would dead-letter healthy messages. ``RedeliveryLimit`` (``MAX_REDELIVERIES``) stays the
  guard that records why a message died. Not on ``.XQ`` (nor the hold queue, which has no consumer):
  ``.XQ`` has no dead-letter target, so a message over the limit would be dropped, and
  ``worker-app dlq adopt`` reads ``.XQ`` by getting and requeueing, which counts.
* never ``x-max-priority``: quorum queues refuse it (PRECONDITION_FAILED). This broker declares no
  priorities for either type; a message's ``broker_priority`` is ignored by both.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from dramatiq.common import xq_name

QueueType = Literal["classic", "quorum"]

#: Far above any sane ``MAX_REDELIVERIES``: only a message returned this often with nothing else
#: noticing (a loop of channel closes) reaches it, and is then dead-lettered into ``.XQ``.
QUORUM_DELIVERY_LIMIT = 1000

_AT_LEAST_ONCE = {"x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"}


class QueueKind(StrEnum):
    """What a queue holds; its declaration arguments follow from it."""

    DOMAIN = "domain"  # <queue>: the domain's work; dead-letters into <queue>.XQ
    DELAY = "delay"  # <queue>.DQ: delayed and retried messages; dead-letters into <queue>.XQ
    DEAD = "dead"  # <queue>.XQ: dead messages, dropped after the retention
    HOLD = "hold"  # cybervpn.hold.<ms>ms: parked messages, dead-lettered back to their .DQ after <ms>


def queue_arguments(
    kind: QueueKind,
    queue_type: QueueType,
    *,
    queue_name: str,
    dead_message_ttl_ms: int,
    max_hold_ms: int,
    single_active_consumer: bool = False,
) -> dict[str, object]:
    """The ``queue_declare`` arguments of a ``kind`` queue of ``queue_type``.

    ``queue_name`` is the canonical (domain) queue: a domain queue and its ``.DQ`` dead-letter into
    its ``.XQ``. ``dead_message_ttl_ms`` is the ``.XQ`` retention, ``max_hold_ms`` the hold bound
    (``DELAY_MAX_HOLD_MS``); each is used only by the kind it concerns. ``single_active_consumer``
    (a shard of an ordered domain, :mod:`worker_app.ordered`) adds ``x-single-active-consumer`` to
    the domain queue: RabbitMQ delivers it to one consumer at a time, the others standing by.
    """
    if kind is QueueKind.DEAD:
        arguments: dict[str, object] = {"x-message-ttl": dead_message_ttl_ms}
    elif kind is QueueKind.HOLD:  # no routing key: a parked message keeps its own (<queue>.DQ)
        arguments = {"x-message-ttl": max_hold_ms, "x-dead-letter-exchange": ""}
    else:
        arguments = {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": xq_name(queue_name)}
    if single_active_consumer and kind is QueueKind.DOMAIN:
        arguments["x-single-active-consumer"] = True
    if queue_type == "classic":
        return arguments
    arguments["x-queue-type"] = "quorum"
    if kind is not QueueKind.DEAD:
        arguments.update(_AT_LEAST_ONCE)
    if kind in (QueueKind.DOMAIN, QueueKind.DELAY):
        arguments["x-delivery-limit"] = QUORUM_DELIVERY_LIMIT
    return arguments
