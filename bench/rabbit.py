"""RabbitMQ helpers: a private vhost per run (management API) and exact queue depths (AMQP).

A :class:`Rabbit` is one server or one cluster: one AMQP base URL per node (the first is the one
the benchmark itself connects to) and the management API of any node (a vhost or a user made
through one node's API exists on the whole cluster).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import suppress
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import pika
import requests


class Rabbit:
    """One RabbitMQ server or cluster: the AMQP base URL of each node (``amqp://user:pw@host:port``,
    a string or a sequence of them, node 1 first) and one node's management API. ``pids``: the
    nodes' Erlang VMs when the caller knows them (a cluster it started), else the API is asked."""

    def __init__(
        self, amqp_base: str | Sequence[str], management_url: str, *, pids: Sequence[int] | None = None
    ) -> None:
        bases = [amqp_base] if isinstance(amqp_base, str) else list(amqp_base)
        if not bases:
            raise ValueError("Rabbit needs at least one AMQP base URL")
        self.amqp_bases = tuple(base.rstrip("/") for base in bases)
        self.amqp_base = self.amqp_bases[0]
        parts = urlsplit(self.amqp_base)
        self.api = management_url.rstrip("/") + "/api"
        self.auth = (unquote(parts.username or "guest"), unquote(parts.password or "guest"))
        self.pids = list(pids) if pids else None

    @property
    def nodes(self) -> int:
        """How many nodes the AMQP URLs name."""
        return len(self.amqp_bases)

    def url(self, vhost: str) -> str:
        """The AMQP URL of ``vhost`` on the first node."""
        return f"{self.amqp_base}/{quote(vhost, safe='')}"

    def urls(self, vhost: str) -> list[str]:
        """The AMQP URL of ``vhost`` on every node, node 1 first."""
        return [f"{base}/{quote(vhost, safe='')}" for base in self.amqp_bases]

    def create_vhost(self, vhost: str) -> None:
        """Create ``vhost`` and give our user every permission on it."""
        name = quote(vhost, safe="")
        requests.put(f"{self.api}/vhosts/{name}", auth=self.auth, timeout=10).raise_for_status()
        requests.put(
            f"{self.api}/permissions/{name}/{quote(self.auth[0], safe='')}",
            json={"configure": ".*", "write": ".*", "read": ".*"},
            auth=self.auth,
            timeout=10,
        ).raise_for_status()

    def delete_vhost(self, vhost: str) -> None:
        """Delete ``vhost`` and everything in it (best effort)."""
        with suppress(requests.RequestException):
            requests.delete(f"{self.api}/vhosts/{quote(vhost, safe='')}", auth=self.auth, timeout=30)

    def queue_depth(self, vhost: str, queue: str) -> int:
        """Messages ready in ``queue`` right now (a passive declare: exact, unlike the API's)."""
        connection = pika.BlockingConnection(pika.URLParameters(self.url(vhost)))
        try:
            frame = connection.channel().queue_declare(queue, passive=True)
            return int(frame.method.message_count)
        finally:
            connection.close()

    def queue_info(self, vhost: str, queue: str) -> dict[str, Any]:
        """The management API's record of ``queue`` (``type``, ``arguments``, and for a quorum queue
        ``leader`` and ``members``)."""
        reply = requests.get(
            f"{self.api}/queues/{quote(vhost, safe='')}/{quote(queue, safe='')}", auth=self.auth, timeout=10
        )
        reply.raise_for_status()
        return dict(reply.json())

    def server_pids(self) -> list[int] | None:
        """The OS pid of every node's Erlang VM, for CPU accounting: ``pids`` if given, else
        ``os_pid`` of each running node in ``/api/nodes``; None when the API does not say for every
        node (a node's figures appear some seconds after it starts)."""
        if self.pids:
            return list(self.pids)
        try:
            reply = requests.get(f"{self.api}/nodes", auth=self.auth, timeout=10)
            reply.raise_for_status()
            pids = [int(node["os_pid"]) for node in reply.json() if node.get("running")]
        except (requests.RequestException, ValueError, KeyError, TypeError):
            return None
        return pids or None
