"""RabbitMQ helpers: a private vhost per run (management API) and exact queue depths (AMQP)."""

from __future__ import annotations

from contextlib import suppress
from urllib.parse import quote, unquote, urlsplit

import pika
import requests


class Rabbit:
    """One RabbitMQ server: its AMQP base URL (``amqp://user:pw@host:port``) and management API."""

    def __init__(self, amqp_base: str, management_url: str) -> None:
        parts = urlsplit(amqp_base)
        self.amqp_base = amqp_base.rstrip("/")
        self.api = management_url.rstrip("/") + "/api"
        self.auth = (unquote(parts.username or "guest"), unquote(parts.password or "guest"))

    def url(self, vhost: str) -> str:
        """The AMQP URL of ``vhost``."""
        return f"{self.amqp_base}/{quote(vhost, safe='')}"

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
