"""The RabbitMQ broker: Dramatiq's, with publisher confirms, durable queues and persistent
messages, plus three fixes for RabbitMQ's ``consumer_timeout`` and for dead letters:

* **bounded delays** — Dramatiq holds delayed messages unacked in memory until their ETA; RabbitMQ
  closes the whole channel when a delivery stays unacked past ``consumer_timeout`` (30 min by
  default) and redelivers everything on it. Here a delayed message whose ETA is further away than
  ``DELAY_MAX_HOLD_MS`` is not held: it is parked in the durable queue
  ``cybervpn.hold.<ms>ms`` (``x-message-ttl`` = the hold bound) and acked. When the TTL expires,
  RabbitMQ dead-letters it back to its ``<queue>.DQ`` (the original routing key), and the cycle
  repeats until the ETA is near. No delivery is ever held longer than the bound.
* **undecodable bodies** are recorded as dead letters (Dramatiq only logs and nacks them).
* ``<queue>.XQ`` keeps dead messages for ``DEAD_LETTER_RETENTION_DAYS`` (Dramatiq: 7 days).

Every queue is declared classic (as Dramatiq does) or quorum (``RABBITMQ_QUEUE_TYPE``), with the
arguments of :func:`worker_app.queue_arguments.queue_arguments`.

Acks and nacks are also coalesced (:class:`_Consumer`): a worker thread queues its settlement and
wakes the consumer's I/O loop only when no wake-up is already pending.
"""

from __future__ import annotations

import logging
import math
import threading
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import pika
from dramatiq import Middleware
from dramatiq.broker import MessageProxy
from dramatiq.brokers.rabbitmq import RabbitmqBroker, _RabbitmqConsumer, _RabbitmqMessage
from dramatiq.common import current_millis, dq_name, q_name, xq_name
from dramatiq.errors import ConnectionClosed, DecodeError
from dramatiq.message import Message

from worker_app import ordered
from worker_app.dispatch import HookDispatch
from worker_app.publishing import PublisherThreads
from worker_app.queue_arguments import QueueKind, QueueType, queue_arguments

log = logging.getLogger(__name__)
T = TypeVar("T")
MAX_PARK_ATTEMPTS = 6


class UndecodableSink(Protocol):
    """Where the consumer reports bodies that are not Dramatiq messages."""

    def record_undecodable(self, queue_name: str, body: bytes, error: BaseException, message_id: str) -> None:
        """Record the body durably."""


class Pauses(Protocol):
    """Which queues are paused right now (:class:`worker_app.pauses.PauseWatcher`)."""

    def is_paused(self, queue_name: str) -> bool:
        """Whether ``queue_name`` (or its domain) is paused."""


class CyberRabbitmqBroker(HookDispatch, RabbitmqBroker):
    """Dramatiq's RabbitMQ broker with bounded in-memory delays, recorded undecodable bodies and
    classic or quorum queues."""

    def __init__(
        self,
        *,
        url: str,
        middleware: list[Middleware],
        max_hold_ms: int,
        dead_message_ttl_ms: int,
        undecodable_sink: UndecodableSink | None = None,
        queue_type: QueueType = "classic",
    ) -> None:
        super().__init__(url=url, middleware=middleware, confirm_delivery=True)
        self.max_hold_ms = max_hold_ms
        self.dead_message_ttl_ms = dead_message_ttl_ms
        self.queue_type: QueueType = queue_type
        self.undecodable_sink = undecodable_sink
        self.hold_name = f"cybervpn.hold.{max_hold_ms}ms"
        self._hold_declared = False

    _publisher: PublisherThreads | None = None
    #: Set in a worker process (:class:`worker_app.middleware.queue_control.QueueControl`): its
    #: consumers stop and resume their subscriptions as queues are paused and resumed.
    pauses: Pauses | None = None

    def publish_through(self, publisher: PublisherThreads | None) -> None:
        """Run every enqueue (and queue declaration) on ``publisher``'s long-lived threads instead of
        the calling thread — for a process whose threads come and go (``worker-app serve``): Dramatiq
        keeps one AMQP connection per thread, and never forgets it. ``None``: the calling thread."""
        self._publisher = publisher

    def on_publisher(self, fn: Callable[[], T]) -> T:
        """``fn()`` on one of the publisher threads when publishing through them (so it sees their
        connection: serve's health check), else on the calling thread."""
        publisher = self._publisher
        return fn() if publisher is None else publisher.run(fn)

    def enqueue(self, message: Message[Any], *, delay: int | None = None) -> Message[Any]:
        message = self._route_ordered(message, delay)
        publisher = self._publisher
        if publisher is None:
            return super().enqueue(message, delay=delay)
        enqueue = super().enqueue
        return publisher.run(lambda: enqueue(message, delay=delay))

    @staticmethod
    def _route_ordered(message: Message[Any], delay: int | None) -> Message[Any]:
        """A message for an ordered domain goes to its key's shard queue (:mod:`worker_app.ordered`);
        a delayed one to a shard is refused, as a delay queue would let later messages overtake it."""
        domain = ordered.ordered_domain(message.queue_name)
        if domain is not None:
            message = message.copy(queue_name=domain.queue_for(message))
        if delay is not None and ordered.shard_domain(message.queue_name) is not None:
            raise ValueError(
                f"{message.actor_name}: a message of the ordered queue {message.queue_name} cannot be "
                "delayed (a delay queue would let the key's later messages overtake it); retry in place"
            )
        return message

    def declare_queue(self, queue_name: str, *, ensure: bool = False) -> None:
        """Dramatiq's, except that a shard queue of an ordered domain gets no delay-queue consumer."""
        if ordered.shard_domain(queue_name) is None:
            super().declare_queue(queue_name, ensure=ensure)
            return
        canonical = q_name(queue_name)
        if canonical not in self.queues:
            self.emit_before("declare_queue", canonical)
            self.queues.add(canonical)
            self.queues_pending.add(canonical)
            self.emit_after("declare_queue", canonical)
        if ensure:
            self._ensure_queue(canonical)

    def _ensure_queue(self, canonical_queue_name: str) -> Any:
        publisher = self._publisher
        if publisher is None:
            return super()._ensure_queue(canonical_queue_name)  # type: ignore[no-untyped-call]
        ensure = super()._ensure_queue
        return publisher.run(lambda: ensure(canonical_queue_name))  # type: ignore[no-untyped-call]

    @property
    def consumer_class(self) -> type[_RabbitmqConsumer]:
        return _Consumer

    def arguments_for(self, kind: QueueKind, queue_name: str = "") -> dict[str, object]:
        """The declaration arguments of this broker's ``kind`` queue for the domain ``queue_name``."""
        return queue_arguments(
            kind,
            self.queue_type,
            queue_name=queue_name,
            dead_message_ttl_ms=self.dead_message_ttl_ms,
            max_hold_ms=self.max_hold_ms,
            single_active_consumer=ordered.shard_domain(queue_name) is not None,
        )

    def _declare_queue(self, queue_name: str) -> Any:
        return self._declare(queue_name, self.arguments_for(QueueKind.DOMAIN, queue_name))

    def _declare_dq_queue(self, queue_name: str) -> Any:
        return self._declare(dq_name(queue_name), self.arguments_for(QueueKind.DELAY, queue_name))

    def _declare_xq_queue(self, queue_name: str) -> Any:
        return self._declare(xq_name(queue_name), self.arguments_for(QueueKind.DEAD, queue_name))

    def _declare(self, name: str, arguments: dict[str, object]) -> Any:
        return self.channel.queue_declare(queue=name, durable=True, arguments=arguments)

    def _declare_hold(self) -> None:
        channel = self.channel
        channel.exchange_declare(self.hold_name, exchange_type="fanout", durable=True)
        self._declare(self.hold_name, self.arguments_for(QueueKind.HOLD))
        channel.queue_bind(self.hold_name, self.hold_name)
        self._hold_declared = True

    def park(self, body: bytes, delay_queue: str) -> None:
        """Publish ``body`` to the hold queue; it returns to ``delay_queue`` after the hold bound."""
        attempts = 0
        while True:
            try:
                if not self._hold_declared:
                    self._declare_hold()
                self.channel.basic_publish(
                    exchange=self.hold_name,
                    routing_key=delay_queue,
                    body=body,
                    properties=pika.BasicProperties(delivery_mode=2),
                    mandatory=True,
                )
                return
            except (pika.exceptions.AMQPConnectionError, pika.exceptions.AMQPChannelError) as e:
                del self.connection
                self._hold_declared = False
                attempts += 1
                if attempts >= MAX_PARK_ATTEMPTS:
                    raise ConnectionClosed(e) from None  # type: ignore[no-untyped-call]


class Delivery(_RabbitmqMessage):
    """A consumed message whose fields are plain attributes of the proxy.

    Dramatiq's proxy reaches every field (``options``, ``actor_name``…) through ``__getattr__``: a
    failed attribute lookup and a Python call, about 0.3 µs each, and the worker and our middleware
    read the fields ~40 times per message. Copying the seven references once costs ~0.4 µs. The
    objects are the message's own (``options`` is the same dict), so a middleware that changes
    ``message.options`` changes the message.
    """

    def __init__(self, redelivered: bool, tag: int, message: Message[Any]) -> None:
        super().__init__(redelivered, tag, message)  # type: ignore[no-untyped-call]
        self.__dict__.update(
            queue_name=message.queue_name,
            actor_name=message.actor_name,
            args=message.args,
            kwargs=message.kwargs,
            options=message.options,
            message_id=message.message_id,
            message_timestamp=message.message_timestamp,
        )


class _Consumer(_RabbitmqConsumer):
    """Dramatiq's consumer, plus parking of far-future delayed messages, recording of bodies that
    cannot be decoded, and coalesced acks.

    Dramatiq's consumer has every worker thread hand its ack to the connection's I/O thread with
    ``add_callback_threadsafe``, which takes the connection's cleanup mutex and writes a byte to
    the I/O loop's wake-up socket while holding it: a system call per message under a lock the
    other worker threads queue on, with the GIL bouncing between them (a lock convoy: in py-spy,
    worker threads spent more time there than in the actor). Here a worker thread appends
    ``(tag, ack)`` to a deque and schedules one flush only if none is pending; the I/O thread's
    flush clears the pending flag *before* it drains the deque, so an entry appended at any moment
    is drained by a flush that starts after it. Settlements keep their order, and Dramatiq's
    ``close`` (a last callback it waits for) still runs after every flush scheduled before it.

    A flush sends the acks it drains as one ``basic.ack(multiple=True)`` of the highest tag when no
    delivery at or below that tag is unsettled: none still running (``known_tags``, read under the
    same lock a worker thread holds to move its tag from there into the deque, so a tag is always in
    one of the two) and none being nacked in the same flush. Every tag below it that is in neither
    was settled before (an ack, a nack, a parked message's ack, a pending delivery returned on pause);
    tags not yet handed out are all higher. On a quorum queue each ``basic.ack`` is a Raft command
    written by every member, so one per flush instead of one per message saves RabbitMQ CPU.
    """

    broker: CyberRabbitmqBroker

    def __init__(self, broker: CyberRabbitmqBroker, queue_name: str, prefetch: int, timeout: int) -> None:
        self._settlements: deque[tuple[int, bool]] = deque()  # (delivery tag, ack: else nack)
        self._flush_lock = threading.Lock()
        self._flush_pending = False
        if ordered.shard_domain(queue_name) is not None:
            prefetch = 1  # the shard's next message only once this one is settled
        self._timeout_s = timeout / 1000
        self._subscribed = True  # False while the queue is paused
        self._consuming = False  # basic.consume sent: pika's consume() generator has been started
        super().__init__(broker, queue_name, prefetch, timeout)  # type: ignore[no-untyped-call]

    def ack(self, message: MessageProxy) -> None:
        self._settle(message, ack=True)

    def nack(self, message: MessageProxy) -> None:
        self._settle(message, ack=False)

    def _nack(self, tag: int) -> None:
        self._queue_settlement(tag, ack=False, known=False)

    def _settle(self, message: MessageProxy, *, ack: bool) -> None:
        self._queue_settlement(message._tag, ack=ack, known=True)  # a _RabbitmqMessage's delivery tag

    def _queue_settlement(self, tag: int, *, ack: bool, known: bool) -> None:
        """Queue ``(tag, ack)`` for the I/O thread and schedule a flush unless one is pending. A
        ``known`` tag moves from ``known_tags`` to the deque under the lock (see the class doc)."""
        with self._flush_lock:
            if known:
                try:
                    self.known_tags.remove(tag)
                except KeyError:  # as Dramatiq: a tag of a consumer that was reset since
                    log.warning("Failed to %s message %s: not in known tags.", "ack" if ack else "nack", tag)
                    return
            self._settlements.append((tag, ack))
            if self._flush_pending:
                return  # a flush that has not started yet will take this entry
            self._flush_pending = True
        scheduled = False
        try:
            self.connection.add_callback_threadsafe(self._flush_settlements)
            scheduled = True
        except (pika.exceptions.AMQPConnectionError, pika.exceptions.AMQPChannelError) as e:
            raise ConnectionClosed(e) from None  # type: ignore[no-untyped-call]
        finally:
            if not scheduled:  # the next settlement tries again (on a closed connection: RabbitMQ redelivers)
                with self._flush_lock:
                    self._flush_pending = False

    def _flush_settlements(self) -> None:
        """On the I/O thread: send every queued ack and nack, in order, the acks below every
        unsettled tag as one multiple ack (see the class doc)."""
        with self._flush_lock:
            self._flush_pending = False
            batch = list(self._settlements)
            self._settlements.clear()
            running = min(self.known_tags, default=math.inf)
        bound = min([running, *(tag for tag, ack in batch if not ack)])
        below = [tag for tag, ack in batch if ack and tag < bound]
        if len(below) > 1:
            self.channel.basic_ack(max(below), multiple=True)
            batch = [(tag, ack) for tag, ack in batch if not (ack and tag < bound)]
        for tag, ack in batch:
            if ack:
                self.channel.basic_ack(tag)
            else:
                self.channel.basic_nack(tag, requeue=False)

    def __next__(self) -> _RabbitmqMessage | None:
        pauses = self.broker.pauses
        if pauses is not None and (self._subscribed != (not pauses.is_paused(self.queue_name))):
            self._toggle_subscription()
        if (
            not self._subscribed
        ):  # paused: keep the connection serviced (heartbeats, acks of running messages)
            try:
                self.connection.process_data_events(time_limit=self._timeout_s)
            except (pika.exceptions.AMQPConnectionError, pika.exceptions.AMQPChannelError) as e:
                raise ConnectionClosed(e) from None  # type: ignore[no-untyped-call]
            return None
        try:
            self._consuming = True
            method, properties, body = next(self.iterator)
            if method is None:
                return None
        except (AssertionError, pika.exceptions.AMQPConnectionError, pika.exceptions.AMQPChannelError) as e:
            if getattr(e, "reply_code", None) == 404:
                self.broker.queues_pending.add(q_name(self.queue_name))
            raise ConnectionClosed(e) from None  # type: ignore[no-untyped-call]

        try:
            message = Message.decode(body)
        except DecodeError as e:
            self._dead_letter_undecodable(method, properties, body, e)
            return None

        if self._should_park(message):
            self.broker.park(body, self.queue_name)
            self.channel.basic_ack(method.delivery_tag)
            return None

        self.known_tags.add(method.delivery_tag)
        return Delivery(method.redelivered, method.delivery_tag, message)

    def _toggle_subscription(self) -> None:
        """Cancel the subscription of a paused queue (deliveries not yet handed out go back to the
        queue, once), or renew it once the queue is resumed (:mod:`worker_app.pauses`)."""
        try:
            if self._subscribed:
                returned = self.channel.cancel() if self._consuming else 0
                self._subscribed = self._consuming = False
                log.info("consumer of %s paused (%d prefetched message(s) returned to the queue)",
                         self.queue_name, returned)  # fmt: skip
            else:
                self.iterator = self.channel.consume(self.queue_name, inactivity_timeout=self._timeout_s)
                self._subscribed = True
                log.info("consumer of %s resumed", self.queue_name)
        except (pika.exceptions.AMQPConnectionError, pika.exceptions.AMQPChannelError) as e:
            raise ConnectionClosed(e) from None  # type: ignore[no-untyped-call]

    def _should_park(self, message: Message[Any]) -> bool:
        eta = message.options.get("eta")
        return isinstance(eta, int | float) and eta - current_millis() > self.broker.max_hold_ms

    def _dead_letter_undecodable(self, method: Any, properties: Any, body: bytes, error: DecodeError) -> None:
        message_id = getattr(properties, "message_id", None) or f"undecodable-{uuid.uuid4().hex}"
        log.error("undecodable message on %s: %s", self.queue_name, error)
        sink = self.broker.undecodable_sink
        if sink is not None:
            sink.record_undecodable(self.queue_name, body, error, message_id)
        self._nack(method.delivery_tag)
