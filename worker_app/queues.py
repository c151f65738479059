"""Queue depths: ready, unacked, delayed (``.DQ``), dead (``.XQ``), consumers and rates per queue,
and — when asked, from PostgreSQL — the open dead letters of each queue.

The RabbitMQ management API is the only source of unacked counts and rates (HAZARDS.md), so it is
asked first; when it cannot be reached (plugin disabled, firewalled) the counts come from AMQP
passive declares instead — ready messages and consumers only, unacked and rates unknown.

``dead`` counts the messages in ``<queue>.XQ`` (RabbitMQ's copies, expired after the retention);
``dead_letters`` counts the ``dead_letters`` rows still ``dead`` (neither replayed nor discarded) —
what an operator has left to handle. A replayed or discarded dead letter stays in ``.XQ``. From the
management API each queue also has its type (``classic``/``quorum``) and where it lives: a classic
queue's node as ``leader``, a quorum queue's leader, members and the members online.

Used by ``worker-app queues``, ``GET /api/v1/queues``, the dashboard's Queues page and the worker's
Prometheus exposition (``cybervpn_queue_depth{queue,state}``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, replace
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import pika
import requests
from dramatiq.common import dq_name, xq_name

from worker_app import amqp, ordered
from worker_app.config import Settings
from worker_app.db import Database
from worker_app.dlq import open_counts_by_queue
from worker_app.policies import DOMAINS

MANAGEMENT_TIMEOUT_S = 3.0
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QueueDepth:
    queue: str
    ready: int
    unacked: int | None
    delayed: int  # ready + unacked in <queue>.DQ (unacked there = held in a worker's memory)
    dead: int  # messages in <queue>.XQ
    consumers: int
    publish_rate: float | None
    deliver_rate: float | None
    dead_letters: int | None = None  # open dead-letter records (PostgreSQL); None = not counted
    queue_type: str | None = None  # classic | quorum (management API only)
    leader: str | None = None  # a quorum queue's leader node (a classic queue's node)
    members: list[str] | None = None  # a quorum queue's member nodes
    online: list[str] | None = None  # its members that are up


@dataclass(frozen=True)
class QueueReport:
    source: str  # "management" | "amqp"
    note: str | None
    queues: list[QueueDepth]

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "note": self.note, "queues": [asdict(q) for q in self.queues]}


def _vhost_and_auth(amqp_url: str) -> tuple[str, tuple[str, str]]:
    parts = urlsplit(amqp_url)
    vhost = unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
    return vhost, (unquote(parts.username or "guest"), unquote(parts.password or "guest"))


def _placement(queue: dict[str, Any]) -> dict[str, Any]:
    """A queue's type and where it lives: a quorum queue's leader, members and online members."""
    if not queue:
        return {}
    kind = str(queue.get("type") or "classic")
    if kind != "quorum":
        return {"queue_type": kind, "leader": queue.get("node")}
    return {"queue_type": kind, "leader": queue.get("leader"), "members": list(queue.get("members") or []),
            "online": list(queue.get("online") or [])}  # fmt: skip


def _rate(stats: dict[str, Any] | None, name: str) -> float | None:
    details = (stats or {}).get(f"{name}_details")
    return float(details["rate"]) if isinstance(details, dict) and "rate" in details else None


def from_management(settings: Settings, queues: list[str]) -> QueueReport:
    """Depths from the management API; raises ``requests.RequestException`` when it is unreachable."""
    vhost, auth = _vhost_and_auth(settings.rabbitmq_urls[0])
    response = requests.get(
        f"{settings.rabbitmq_management_url}/api/queues/{quote(vhost, safe='')}",
        params={
            "columns": "name,messages_ready,messages_unacknowledged,consumers,message_stats,type,node,"
            "leader,members,online"
        },
        auth=auth,
        timeout=MANAGEMENT_TIMEOUT_S,
    )
    response.raise_for_status()
    by_name = {q["name"]: q for q in response.json()}

    def get(name: str, field: str) -> int:
        return int(by_name.get(name, {}).get(field) or 0)

    depths = []
    for queue in queues:
        stats = by_name.get(queue, {}).get("message_stats")
        depths.append(
            QueueDepth(
                queue=queue,
                ready=get(queue, "messages_ready"),
                unacked=get(queue, "messages_unacknowledged"),
                delayed=get(dq_name(queue), "messages_ready")
                + get(dq_name(queue), "messages_unacknowledged"),
                dead=get(xq_name(queue), "messages_ready"),
                consumers=get(queue, "consumers"),
                publish_rate=_rate(stats, "publish"),
                deliver_rate=_rate(stats, "deliver_get"),
                **_placement(by_name.get(queue, {})),
            )
        )
    return QueueReport("management", "management API stats refresh about every 5 s", depths)


def from_amqp(settings: Settings, queues: list[str], why: str) -> QueueReport:
    """Depths from passive declares: ready messages and consumers; a queue never declared counts 0."""
    connection = amqp.connect(settings.rabbitmq_urls)
    try:

        def declare(name: str) -> tuple[int, int]:
            channel = connection.channel()
            try:
                frame = channel.queue_declare(name, passive=True)
            except pika.exceptions.ChannelClosedByBroker as e:
                if e.reply_code == 404:
                    return 0, 0
                raise
            count = (int(frame.method.message_count), int(frame.method.consumer_count))
            channel.close()
            return count

        depths = []
        for queue in queues:
            ready, consumers = declare(queue)
            depths.append(
                QueueDepth(
                    queue=queue, ready=ready, unacked=None, delayed=declare(dq_name(queue))[0],
                    dead=declare(xq_name(queue))[0], consumers=consumers,
                    publish_rate=None, deliver_rate=None,
                )
            )  # fmt: skip
    finally:
        connection.close()
    return QueueReport(
        "amqp", f"management API unreachable ({why}): unacked counts and rates unknown", depths
    )


def work_left(settings: Settings, queues: list[str]) -> tuple[int, str | None]:
    """Messages still to run in ``queues`` and their ``.DQ``: ready ones counted exactly (passive
    declares: the management API's figures can be seconds old, or absent for a queue it has not
    sampled yet), plus the unacknowledged (being run, or held delayed) from the management API.
    ``.XQ`` is not counted: dead messages are not work left. The note says what could not be known."""
    names = [n for q in queues for n in (q, dq_name(q))]
    exact = from_amqp(settings, queues, "exact ready counts")
    ready = sum(q.ready + q.delayed for q in exact.queues)  # .DQ: its ready messages (from_amqp)
    try:
        managed = from_management(settings, names)
    except requests.RequestException as e:
        return ready, f"management API unreachable ({type(e).__name__}): messages being run are not counted"
    return ready + sum(q.unacked or 0 for q in managed.queues), None


def with_dead_letters(report: QueueReport, database: Database) -> QueueReport:
    """``report`` with each queue's open dead letters filled in (one query). A database error is
    raised (``sqlalchemy.exc.OperationalError`` when PostgreSQL is down), never shown as zero."""
    counts = open_counts_by_queue(database)
    return replace(report, queues=[replace(q, dead_letters=counts.get(q.queue, 0)) for q in report.queues])


def queue_report(
    settings: Settings, queues: list[str] | None = None, *, database: Database | None = None
) -> QueueReport:
    """Depths of ``queues`` (default: every domain queue), from the best source available; with
    ``database``, also each queue's open dead letters (see :func:`with_dead_letters`)."""
    names = list(queues or ordered.with_shards(DOMAINS))
    try:
        report = from_management(settings, names)
    except requests.RequestException as e:
        reason = (
            type(e).__name__ if not isinstance(e, requests.HTTPError) else f"HTTP {e.response.status_code}"
        )
        report = from_amqp(settings, names, reason)
    return report if database is None else with_dead_letters(report, database)


class QueueDepthCollector:
    """Prometheus collector: ``cybervpn_queue_depth{queue,state}`` (ready, unacked, delayed, dead)
    and ``cybervpn_queue_consumers{queue}``, cached for ``ttl_s`` between scrapes."""

    def __init__(self, settings: Settings, ttl_s: float = 5.0) -> None:
        self.settings = settings
        self.ttl_s = ttl_s
        self._cached: tuple[float, QueueReport] | None = None

    def collect(self) -> Any:
        from prometheus_client.core import GaugeMetricFamily

        now = time.monotonic()
        if self._cached is None or now - self._cached[0] > self.ttl_s:
            try:
                self._cached = (now, queue_report(self.settings))
            except Exception as e:  # queue depths must never take the worker's other metrics down
                log.warning("queue depths not exported this scrape: %s: %s", type(e).__name__, e)
                return
        report = self._cached[1]
        depth = GaugeMetricFamily(
            "cybervpn_queue_depth", "Messages in a domain queue by state.", labels=["queue", "state"]
        )
        consumers = GaugeMetricFamily(
            "cybervpn_queue_consumers", "Consumers of a domain queue.", labels=["queue"]
        )
        for q in report.queues:
            for state, value in (
                ("ready", q.ready),
                ("unacked", q.unacked),
                ("delayed", q.delayed),
                ("dead", q.dead),
            ):
                if value is not None:
                    depth.add_metric([q.queue, state], value)
            consumers.add_metric([q.queue], q.consumers)
        yield depth
        yield consumers
