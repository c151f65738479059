"""Ordered domains: work handled one message at a time per key (a Telegram chat), in arrival order,
while different keys run in parallel, across worker processes and hosts.

A domain registers itself with :func:`register` (``bot_updates`` does, with ``BOT_UPDATE_SHARDS``
shards and the chat of an update as its key). Its work then lives in ``shards`` queues
``<domain>.00`` … ``<domain>.<shards-1>`` instead of the domain queue:

* **the producer picks the shard**: every message sent to the domain queue (``actor.send(...)``, the
  webhook, the HTTP API) is routed by the broker to ``<domain>.<n>``, ``n`` a stable hash of the
  message's key modulo ``shards`` (:meth:`OrderedDomain.shard_of`). One key always lands in one shard,
  so its messages are in one queue, in the order their publishes were confirmed;
* **one consumer at a time per shard**: each shard queue is declared with
  ``x-single-active-consumer``. Every worker process subscribes to every shard, RabbitMQ delivers a
  shard to one of them only (the others are standbys, and one takes over, from the first
  unacknowledged message, when the active one dies or cancels);
* **one message at a time per shard**: a shard's consumer has prefetch 1, so the next message of the
  shard is delivered only once the previous one is acknowledged — after it succeeded or was recorded
  dead;
* **never through a delay queue**: a retry through ``<queue>.DQ`` would let the key's later messages
  overtake it, so a shard queue has no delay-queue consumer and the broker refuses a delayed publish
  to one. A domain retries in place, inside its actor (``bot_updates``: 3 retries, short exponential
  backoff), then lets the message die into the dead letters, and the shard moves on.

The cost: a shard is as slow as its slowest message (a key's neighbours in its shard wait for it),
and parallelism is bounded by the shard count. Changing the shard count moves keys between shards:
drain the domain first (``worker-app queues drain <domain> --wait``), or messages of one key may run
out of order for one round. docs/design.md explains the choice over the consistent-hash exchange.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dramatiq.common import q_name

#: The key of a message: what must be handled in order (a chat id), from the message itself.
KeyOf = Callable[[Any], str]


@dataclass(frozen=True)
class OrderedDomain:
    """A domain whose messages are ordered per key across ``shards`` queues."""

    domain: str
    shards: int
    key_of: KeyOf

    def __post_init__(self) -> None:
        if not 1 <= self.shards <= 1000:
            raise ValueError(f"{self.domain}: shards must be 1..1000, not {self.shards}")

    def queue(self, index: int) -> str:
        """The name of shard ``index``'s queue."""
        return f"{self.domain}.{index:02d}"

    def queues(self) -> list[str]:
        """Every shard queue, in order."""
        return [self.queue(i) for i in range(self.shards)]

    def shard_of(self, key: str) -> int:
        """The shard of ``key``: stable across processes, hosts and Python versions (not ``hash()``)."""
        digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") % self.shards

    def queue_for(self, message: Any) -> str:
        """The shard queue ``message`` belongs in."""
        return self.queue(self.shard_of(self.key_of(message)))


_DOMAINS: dict[str, OrderedDomain] = {}
_SHARDS: dict[str, OrderedDomain] = {}


def register(domain: OrderedDomain) -> None:
    """Make ``domain.domain`` an ordered domain (its package does, when its actors load)."""
    _DOMAINS[domain.domain] = domain
    for name in domain.queues():
        _SHARDS[name] = domain


def ordered_domain(queue_name: str) -> OrderedDomain | None:
    """The ordered domain ``queue_name`` is the domain queue of (``bot_updates``), if any."""
    return _DOMAINS.get(queue_name)


def shard_domain(queue_name: str) -> OrderedDomain | None:
    """The ordered domain ``queue_name`` (or its ``.DQ``/``.XQ``) is a shard of, if any."""
    return _SHARDS.get(q_name(queue_name))


def domains() -> list[OrderedDomain]:
    """Every registered ordered domain."""
    return list(_DOMAINS.values())


def domain_of(queue_name: str) -> str:
    """The domain of any queue: a shard's domain (``bot_updates.03`` → ``bot_updates``), else the
    queue's canonical name (``payments.DQ`` → ``payments``)."""
    canonical = q_name(queue_name)
    shard = _SHARDS.get(canonical)
    return shard.domain if shard is not None else canonical


def with_shards(queues: list[str] | tuple[str, ...]) -> list[str]:
    """``queues`` in order, each ordered domain followed by its shard queues."""
    listed: list[str] = []
    for name in queues:
        listed.append(name)
        domain = _DOMAINS.get(name)
        if domain is not None:
            listed.extend(domain.queues())
    return listed


def expand(queues: set[str] | list[str]) -> set[str]:
    """``queues`` with every ordered domain among them replaced by its shard queues too (for a
    worker told to consume ``bot_updates``)."""
    expanded = set(queues)
    for name in queues:
        domain = _DOMAINS.get(name)
        if domain is not None:
            expanded.update(domain.queues())
    return expanded
