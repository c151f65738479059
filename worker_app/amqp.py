"""Plain AMQP connections for the operator's tools (queue depths, purge, adopting dead messages): one
:class:`pika.BlockingConnection` over every node of RABBITMQ_URL, tried in order — a node that is
down is skipped, as the broker's own connections do."""

from __future__ import annotations

from collections.abc import Sequence

import pika


def connect(urls: Sequence[str]) -> pika.BlockingConnection:
    """A connection to the first of ``urls`` that answers (``settings.rabbitmq_urls``)."""
    return pika.BlockingConnection([pika.URLParameters(u) for u in urls])
