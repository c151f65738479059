"""Moving a deployment's queues from classic to quorum (``worker-app queues migrate --to quorum``).

A queue never changes type, and its name is its domain (Dramatiq routes by queue name), so the quorum
queues keep their names and live in another vhost: each is declared there with the arguments the
broker would give it (:func:`worker_app.queue_arguments.queue_arguments`), and the messages are moved
queue by queue. A message is taken from the source with ``basic.get`` (manual ack), published to the
target unchanged (body and every property, headers and ``x-death`` included) with ``mandatory`` and a
publisher confirm, and acked in the source only once the target confirmed it; a message the target
returns or nacks is requeued in the source and the migration stops. A crash between a confirm and its
ack leaves that message in both vhosts: a duplicate (its Dramatiq message id shows it), never a loss.

Re-running it moves what reached the source since (the sweep after the producers switched). After
moving, each queue's counts must add up — ready when planned = moved + ready now — or the command
fails: something else still publishes to or consumes from the source. docs/quorum.md has the runbook.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import pika
import requests
from dramatiq.common import dq_name, q_name, xq_name

from worker_app import amqp, ordered
from worker_app.errors import WorkerError
from worker_app.queue_arguments import QueueKind, queue_arguments
from worker_app.queues import MANAGEMENT_TIMEOUT_S, _vhost_and_auth

HOLD_QUEUE = re.compile(r"cybervpn\.hold\.(\d+)ms")
#: Messages published before waiting for their confirms; also the most a failure requeues at once.
BATCH_SIZE = 500
CONFIRM_TIMEOUT_S = 60.0
MOVE, QUORUM, MISSING = "move", "already quorum", "missing"
_ARRIVED = "arrived in the source during the move: something still publishes to it (run again to sweep)"
_LEFT = "left the source other than by this move: a consumer took them"
_KIND_ORDER = {QueueKind.HOLD: 0, QueueKind.DOMAIN: 1, QueueKind.DELAY: 2, QueueKind.DEAD: 3}


class MigrationError(WorkerError):
    """The migration stopped or did not add up; nothing was lost (see the message)."""


class InvalidTarget(MigrationError):
    """The target vhost cannot be used (the source itself, or no name)."""


class QueuesBusy(MigrationError):
    """A source queue has consumers or unacked messages (and ``force`` was not given)."""


@dataclass(frozen=True)
class Deployment:
    """Where the source queues are (RABBITMQ_URL's vhost) and how the broker declares queues."""

    urls: Sequence[str]  # settings.rabbitmq_urls
    management_url: str  # settings.rabbitmq_management_url
    dead_message_ttl_ms: int  # the broker's .XQ retention
    max_hold_ms: int  # the broker's hold bound (DELAY_MAX_HOLD_MS)

    @property
    def vhost(self) -> str:
        return _vhost_and_auth(self.urls[0])[0]

    @property
    def auth(self) -> tuple[str, str]:
        return _vhost_and_auth(self.urls[0])[1]

    def urls_for(self, vhost: str) -> list[str]:
        """The same nodes and user, on ``vhost``."""
        return [urlunsplit(urlsplit(u)._replace(path="/" + quote(vhost, safe=""))) for u in self.urls]


@dataclass(frozen=True)
class QueuePlan:
    name: str
    kind: QueueKind
    action: str  # MOVE | QUORUM (nothing to do) | MISSING (nothing to do)
    source_type: str | None
    ready: int
    unacked: int | None  # management API (its stats lag ~5 s)
    consumers: int
    arguments: dict[str, object]  # the target's declaration (quorum)
    target: str  # "new" | "exists" | "exists with other arguments: {...}"

    @property
    def busy(self) -> bool:
        return self.action == MOVE and bool(self.consumers or self.unacked)


@dataclass(frozen=True)
class MigrationPlan:
    source_vhost: str
    target_vhost: str
    target_exists: bool
    queues: list[QueuePlan]

    @property
    def to_move(self) -> list[QueuePlan]:
        return [q for q in self.queues if q.action == MOVE]

    @property
    def busy(self) -> list[QueuePlan]:
        return [q for q in self.queues if q.busy]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class QueueResult:
    name: str
    kind: QueueKind
    planned: int  # ready in the source when planned
    moved: int
    source_now: int
    target_now: int


@dataclass(frozen=True)
class MigrationResult:
    created_vhost: bool
    queues: list[QueueResult]
    deleted: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # not deleted, with RabbitMQ's reason

    @property
    def moved(self) -> int:
        return sum(q.moved for q in self.queues)

    def imbalances(self) -> list[str]:
        """Where moved + left in the source differs from what was planned. A held message expires
        from the hold queue into its ``.DQ``, so the hold queues and every ``.DQ`` count as one."""
        pools: dict[str, list[QueueResult]] = {}
        for q in self.queues:
            pools.setdefault(
                "held+delayed" if q.kind in (QueueKind.HOLD, QueueKind.DELAY) else q.name, []
            ).append(q)
        problems = []
        for members in pools.values():
            diff = sum(q.moved + q.source_now - q.planned for q in members)
            if diff:
                why = _ARRIVED if diff > 0 else _LEFT
                problems.append(f"{', '.join(q.name for q in members)}: {abs(diff)} message(s) {why}")
        return problems

    @property
    def ok(self) -> bool:
        return not self.imbalances() and not self.kept

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "moved": self.moved, "imbalances": self.imbalances(), "ok": self.ok}


def _management(deployment: Deployment, method: str, path: str, **kwargs: Any) -> requests.Response:
    """A management API call; 404 is the caller's to read, any other error stops the migration."""
    response = requests.request(method, f"{deployment.management_url}/api/{path}", auth=deployment.auth,
                                timeout=MANAGEMENT_TIMEOUT_S, **kwargs)  # fmt: skip
    if response.status_code >= 400 and response.status_code != 404:
        raise MigrationError(f"the RabbitMQ management API answered {method} /api/{path} with HTTP "
                             f"{response.status_code}: {response.text[:200]}")  # fmt: skip
    return response


def _listed_queues(deployment: Deployment, vhost: str) -> dict[str, dict[str, Any]] | None:
    """The queues of ``vhost`` by name (type, arguments, unacked); ``None`` if the vhost is missing."""
    response = _management(deployment, "GET", f"queues/{quote(vhost, safe='')}",
                           params={"columns": "name,type,arguments,messages_unacknowledged"})  # fmt: skip
    return None if response.status_code == 404 else {q["name"]: q for q in response.json()}


def ensure_vhost(deployment: Deployment, vhost: str) -> bool:
    """Create ``vhost`` if missing, and give RABBITMQ_URL's user full permissions on it if it has none
    (an operator's narrower grant stays). True if it was created."""
    path, user = quote(vhost, safe=""), quote(deployment.auth[0], safe="")
    created = _management(deployment, "GET", f"vhosts/{path}").status_code == 404
    if created:
        _management(deployment, "PUT", f"vhosts/{path}")
    if _management(deployment, "GET", f"permissions/{path}/{user}").status_code == 404:
        grant = {"configure": ".*", "write": ".*", "read": ".*"}
        _management(deployment, "PUT", f"permissions/{path}/{user}", json=grant)
    return created


def _kind(name: str) -> QueueKind:
    if HOLD_QUEUE.fullmatch(name):
        return QueueKind.HOLD
    return {dq_name(q_name(name)): QueueKind.DELAY, xq_name(q_name(name)): QueueKind.DEAD}.get(
        name, QueueKind.DOMAIN
    )


def target_arguments(deployment: Deployment, name: str) -> dict[str, object]:
    """The quorum declaration of ``name`` — the broker's own (a hold queue's bound is in its name)."""
    hold = HOLD_QUEUE.fullmatch(name)
    return queue_arguments(_kind(name), "quorum", queue_name=q_name(name),
                           dead_message_ttl_ms=deployment.dead_message_ttl_ms,
                           max_hold_ms=int(hold.group(1)) if hold else deployment.max_hold_ms,
                           single_active_consumer=ordered.shard_domain(name) is not None)  # fmt: skip


def _passive_counts(connection: Any, name: str) -> tuple[int, int] | None:
    """(ready, consumers) of ``name`` right now, ``None`` if it does not exist."""
    channel = connection.channel()
    try:
        frame = channel.queue_declare(name, passive=True)
    except pika.exceptions.ChannelClosedByBroker as e:
        if e.reply_code == 404:
            return None
        raise
    channel.close()
    return int(frame.method.message_count), int(frame.method.consumer_count)


def _target_state(found: dict[str, Any] | None, arguments: dict[str, object]) -> str:
    if found is None:
        return "new"
    if found.get("arguments") == arguments:
        return "exists"
    return f"exists with other arguments: {found.get('type')} {found.get('arguments')}"


def _plan_queue(connection: Any, deployment: Deployment, name: str, source: dict[str, Any],
                target: dict[str, Any]) -> QueuePlan:  # fmt: skip
    counts = _passive_counts(connection, name)
    arguments = target_arguments(deployment, name)
    if counts is None:
        return QueuePlan(name, _kind(name), MISSING, None, 0, None, 0, arguments, "-")
    listed = source.get(name, {})
    source_type = str(listed.get("type") or "classic")
    action = QUORUM if source_type == "quorum" else MOVE
    unacked = listed.get("messages_unacknowledged")
    ready, consumers = counts
    state = _target_state(target.get(name), arguments)
    unacked_count = None if unacked is None else int(unacked)
    return QueuePlan(
        name, _kind(name), action, source_type, ready, unacked_count, consumers, arguments, state
    )


def plan_migration(deployment: Deployment, target_vhost: str, queue_names: Iterable[str]) -> MigrationPlan:
    """What moving ``queue_names`` (the domain queues and their .DQ/.XQ) and every hold queue of the
    source vhost to ``target_vhost`` would do. Reads only: nothing is declared or moved."""
    source_vhost = deployment.vhost
    if not target_vhost.strip():
        raise InvalidTarget("--target-vhost must name a vhost")
    if target_vhost == source_vhost:
        raise InvalidTarget(f"--target-vhost {target_vhost!r} is the source vhost (RABBITMQ_URL's): a queue "
                            "cannot change type in place; name a new vhost")  # fmt: skip
    source = _listed_queues(deployment, source_vhost) or {}
    target = _listed_queues(deployment, target_vhost)
    holds = {n for n in source if HOLD_QUEUE.fullmatch(n)} | {f"cybervpn.hold.{deployment.max_hold_ms}ms"}
    names = sorted(
        {*queue_names, *holds}, key=lambda n: (_KIND_ORDER[_kind(n)] > 0, q_name(n), _KIND_ORDER[_kind(n)])
    )
    connection = amqp.connect(deployment.urls)
    try:
        queues = [_plan_queue(connection, deployment, n, source, target or {}) for n in names]
    finally:
        connection.close()
    return MigrationPlan(source_vhost, target_vhost, target is not None, queues)


class ConfirmedPublisher:
    """Publishes to one vhost with ``mandatory`` and publisher confirms, many messages in flight.

    pika's ``BlockingChannel.basic_publish`` waits for each confirm (about 1 ms for a persistent
    message here, 10x the batched cost); this publishes on the asynchronous channel under it (the
    ``pika.channel.Channel`` pika's SelectConnection hands out), drives the connection's I/O while
    waiting, and waits once per batch. A message is *taken* once RabbitMQ acked it without returning
    it: a ``mandatory`` message that reached no queue is returned (``basic.return``) before its ack.
    """

    def __init__(self, connection: Any, timeout_s: float = CONFIRM_TIMEOUT_S) -> None:
        self._connection = connection
        self._blocking = connection.channel()
        self._channel = self._blocking._impl  # see the class docstring
        self._timeout_s = timeout_s
        self._next = 1
        self._in_flight: dict[int, bytes] = {}  # publish sequence number -> body (to match a return)
        self._refused: set[int] = set()  # returned or nacked
        self._taken: set[int] = set()
        self.problem: str | None = None
        self._channel.add_on_return_callback(self._on_return)
        self._channel.add_on_close_callback(self._on_close)
        selected: list[object] = []
        self._channel.confirm_delivery(ack_nack_callback=self._on_confirm, callback=selected.append)
        self._wait(lambda: bool(selected), "confirm mode")

    def publish(self, exchange: str, routing_key: str, body: bytes, properties: Any) -> int:
        """Send one message; its sequence number (see :meth:`outcomes`)."""
        if self._channel.is_closed:
            raise MigrationError(f"the target closed the channel: {self.problem}")
        self._channel.basic_publish(exchange, routing_key, body, properties, mandatory=True)
        self._in_flight[self._next] = body
        self._next += 1
        return self._next - 1

    def wait_for_confirms(self) -> None:
        self._wait(lambda: not self._in_flight, f"confirms of {len(self._in_flight)} message(s)")

    def outcomes(self, sequences: Iterable[int]) -> list[bool]:
        """Whether each message was taken (False: refused, or not confirmed yet); forgets them."""
        found = [s in self._taken for s in sequences]
        self._taken.clear()
        self._refused.clear()
        return found

    def _wait(self, done: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + self._timeout_s
        while not done():
            if self._channel.is_closed:
                raise MigrationError(f"the target closed the channel: {self.problem}")
            if time.monotonic() > deadline:
                raise MigrationError(
                    f"the target vhost did not confirm within {self._timeout_s:.0f} s ({what})"
                )
            self._connection.process_data_events(time_limit=0.01)

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        done = (
            [s for s in self._in_flight if s <= method.delivery_tag]
            if method.multiple
            else [method.delivery_tag]
        )
        nacked = isinstance(method, pika.spec.Basic.Nack)
        if nacked:
            self.problem = "nacked by RabbitMQ"
        for sequence in done:
            self._in_flight.pop(sequence, None)
            if not nacked and sequence not in self._refused:
                self._taken.add(sequence)

    def _on_return(self, _channel: Any, method: Any, _properties: Any, body: bytes) -> None:
        # a return names no sequence number: it is the unconfirmed message with this body (two with
        # the same body are interchangeable); if none matches, refuse every unconfirmed one
        self.problem = (
            f"returned: {method.reply_code} {method.reply_text}, routing key {method.routing_key!r}"
        )
        match = [s for s, b in self._in_flight.items() if b == body and s not in self._refused][:1]
        self._refused.update(match or self._in_flight)

    def _on_close(self, _channel: Any, reason: Exception) -> None:
        self.problem = self.problem or str(reason)


def _get_batch(source: Any, name: str, size: int) -> list[tuple[Any, Any, bytes]]:
    batch: list[tuple[Any, Any, bytes]] = []
    while len(batch) < size:
        method, properties, body = source.basic_get(name, auto_ack=False)
        if method is None:
            break
        batch.append((method, properties, body))
    return batch


def _route(queue: QueuePlan, method: Any) -> tuple[str, str]:
    """Where the target copy is published. A held message goes through the hold exchange keeping its
    own routing key (``<queue>.DQ``): the hold queue dead-letters it with that key when it expires.
    Published by queue name instead, it would expire back into the hold queue, and RabbitMQ drops a
    message that cycles through a queue without a rejection."""
    if queue.kind is QueueKind.HOLD:
        return queue.name, str(method.routing_key)
    return "", queue.name


def _settle(source: Any, sent: list[tuple[int, int]], batch_size: int, publisher: ConfirmedPublisher) -> int:
    """Ack in the source what the target took, requeue the rest of the batch; the number acked."""
    taken = publisher.outcomes(seq for _, seq in sent)
    if not source.is_open:
        return 0  # RabbitMQ requeues what a closed channel held: taken ones are now duplicates
    if all(taken) and len(sent) == batch_size:
        source.basic_ack(sent[-1][0], multiple=True)
        return batch_size
    for (tag, _), ok in zip(sent, taken, strict=True):
        if ok:
            source.basic_ack(tag)
    source.basic_nack(0, multiple=True, requeue=True)
    return sum(taken)


def _forward(
    source: Any, publisher: ConfirmedPublisher, queue: QueuePlan, batch: list[tuple[Any, Any, bytes]]
) -> int:
    """Publish ``batch`` to the target and settle it in the source; anything else than every message
    taken stops the move (after the settlement: taken ones acked, the others requeued)."""
    sent: list[tuple[int, int]] = []  # (source delivery tag, target publish sequence)
    problem = None
    try:
        for method, properties, body in batch:
            sent.append((method.delivery_tag, publisher.publish(*_route(queue, method), body, properties)))
        publisher.wait_for_confirms()
    except MigrationError as e:  # the target closed the channel, or did not confirm in time
        problem = str(e)
    finally:
        moved = _settle(source, sent, len(batch), publisher)
    if moved < len(batch):
        why = problem or publisher.problem
        raise MigrationError(
            f"{queue.name}: the target did not take {len(batch) - moved} message(s) ({why}); "
            "they are back in the source queue"
        )
    return moved


def move_queue(
    source: Any, publisher: ConfirmedPublisher, queue: QueuePlan, batch_size: int = BATCH_SIZE
) -> int:
    """Move every message of ``queue`` (until it is empty) to the queue of the same name in the
    target; the number moved. ``source`` is a channel on the source vhost."""
    moved = 0
    while batch := _get_batch(source, queue.name, batch_size):
        moved += _forward(source, publisher, queue, batch)
    return moved


def declare_targets(channel: Any, queues: Iterable[QueuePlan]) -> None:
    """Declare each queue in the target as the broker does (durable; a hold queue behind its fanout
    exchange of the same name)."""
    for queue in queues:
        try:
            channel.queue_declare(queue.name, durable=True, arguments=queue.arguments)
            if queue.kind is QueueKind.HOLD:
                channel.exchange_declare(queue.name, exchange_type="fanout", durable=True)
                channel.queue_bind(queue.name, queue.name)
        except pika.exceptions.ChannelClosedByBroker as e:
            raise MigrationError(f"cannot declare {queue.name} in the target vhost: {e.reply_text}") from e


def delete_queues(connection: Any, names: Iterable[str]) -> tuple[list[str], list[str]]:
    """Delete each source queue that is empty and unused (RabbitMQ checks both); (deleted, kept)."""
    deleted, kept = [], []
    for name in names:
        channel = connection.channel()
        try:
            channel.queue_delete(name, if_unused=True, if_empty=True)
        except pika.exceptions.ChannelClosedByBroker as e:
            kept.append(f"{name} ({e.reply_text})")
            continue
        channel.close()
        deleted.append(name)
    return deleted, kept


def _check_idle(plan: MigrationPlan) -> None:
    busy = [f"{q.name} ({q.consumers} consumer(s), {q.unacked or 0} unacked)" for q in plan.busy]
    if busy:
        raise QueuesBusy(
            f"source queues in use: {', '.join(busy)}. Stop the workers on vhost {plan.source_vhost!r} "
            "(or point them at the target) and run again (unacked counts come from the management API and "
            "lag about 5 s behind); --force moves anyway"
        )


def _stopped(why: str, moved: dict[str, int]) -> str:
    return f"{why}; {sum(moved.values())} message(s) of earlier queues were moved; run again to go on"


def _move_all(source: Any, publisher: ConfirmedPublisher, queues: list[QueuePlan]) -> dict[str, int]:
    moved: dict[str, int] = {}
    channel = source.channel()
    for queue in queues:
        try:
            moved[queue.name] = move_queue(channel, publisher, queue)
        except pika.exceptions.ChannelClosedByBroker as e:  # e.g. the queue was deleted meanwhile
            raise MigrationError(
                _stopped(f"{queue.name}: the source closed the channel: {e.reply_text}", moved)
            ) from e
        except MigrationError as e:
            raise MigrationError(_stopped(str(e), moved)) from e
    channel.close()
    return moved


def migrate(
    deployment: Deployment, plan: MigrationPlan, *, force: bool = False, delete_old: bool = False
) -> MigrationResult:
    """Carry out ``plan``: create the target vhost if missing, declare its quorum queues, move the
    messages, count both sides; with ``delete_old``, and only if every count adds up, delete the source
    queues that are empty and unused. Raises :class:`QueuesBusy` (unless ``force``) and
    :class:`MigrationError`; RabbitMQ or its management API unreachable raise pika's and requests'
    errors."""
    if not force:
        _check_idle(plan)
    queues = plan.to_move
    if not queues:
        return MigrationResult(created_vhost=False, queues=[])
    created = ensure_vhost(deployment, plan.target_vhost)
    source = amqp.connect(deployment.urls)
    target = amqp.connect(deployment.urls_for(plan.target_vhost))
    try:
        declare_targets(target.channel(), queues)
        moved = _move_all(source, ConfirmedPublisher(target), queues)
        counted = [
            QueueResult(
                q.name, q.kind, q.ready, moved[q.name], _ready(source, q.name), _ready(target, q.name)
            )
            for q in queues
        ]
        result = MigrationResult(created, counted)
        if delete_old and result.ok:
            deleted, kept = delete_queues(source, [q.name for q in queues])
            result = MigrationResult(created, result.queues, deleted, kept)
    finally:
        for connection in (source, target):
            if connection.is_open:
                connection.close()
    return result


def _ready(connection: Any, name: str) -> int:
    counts = _passive_counts(connection, name)
    return 0 if counts is None else counts[0]
