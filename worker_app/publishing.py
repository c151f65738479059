"""A few long-lived threads that publish for a process whose own threads come and go.

Dramatiq's RabbitMQ broker keeps one AMQP connection per thread. A worker's threads live as long as
the worker, so that is a handful of connections. ``worker-app serve`` runs each HTTP connection on a
thread of its own (werkzeug's threaded server): every webhook or API call that enqueued opened a new
AMQP connection — TCP, handshake, channel, confirm mode — and left it to the garbage collector when
its thread ended. Under a burst that is thousands of connections churned through RabbitMQ, and
handshakes start to stall (seen: a webhook unanswered for over 10 s in a run of 2,000).

:class:`PublisherThreads` gives such a process ``threads`` publishing threads, each with its one
connection for the life of the process. A caller's publish runs on one of them, in a copy of the
caller's context (the trace id and job context are ``ContextVar``\\ s), and the caller waits for the
publisher confirm as before — or at most ``timeout_s``, then :class:`PublishTimeout`. Between
publishes an idle thread services its connection's heartbeats, so the broker never drops it.
:meth:`worker_app.broker.CyberRabbitmqBroker.publish_through` routes a broker's enqueues here.
"""

from __future__ import annotations

import contextvars
import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar

from worker_app.errors import UpstreamUnavailable

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Longest pause between services of an idle connection; a quarter of a shorter negotiated heartbeat.
PUMP_INTERVAL_S = 5.0


class PublishTimeout(UpstreamUnavailable):
    """The publish did not finish (RabbitMQ's confirm) within the timeout; it may still happen."""


class PublisherThreads:
    """``threads`` threads publishing on ``broker``'s per-thread connections; see the module."""

    def __init__(self, broker: Any, *, threads: int, timeout_s: float) -> None:
        if threads < 1:
            raise ValueError("threads must be >= 1")
        self.broker = broker
        self.timeout_s = timeout_s
        self._work: queue.Queue[tuple[Callable[[], Any], Future[Any]] | None] = queue.Queue()
        self._mine = threading.local()
        self._threads = [
            threading.Thread(target=self._serve, name=f"publisher-{n}", daemon=True) for n in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    def run(self, fn: Callable[[], T]) -> T:
        """``fn()`` on a publisher thread (directly when called from one), in the caller's context."""
        if getattr(self._mine, "publisher", False):
            return fn()
        context = contextvars.copy_context()
        future: Future[T] = Future()
        self._work.put((lambda: context.run(fn), future))
        try:
            return future.result(timeout=self.timeout_s)
        except FutureTimeout:
            started = not future.cancel()
            raise PublishTimeout(
                f"RabbitMQ did not confirm a publish within {self.timeout_s:g} s "
                + ("(it may still be published)" if started else "(it was not published)")
            ) from None

    def close(self, timeout_s: float = 5.0) -> None:
        """Finish the queued publishes, close the connections, stop the threads."""
        for _ in self._threads:
            self._work.put(None)
        for thread in self._threads:
            thread.join(timeout_s)

    def _serve(self) -> None:
        self._mine.publisher = True
        try:
            while True:
                try:
                    item = self._work.get(timeout=pump_interval(self.broker))
                except queue.Empty:
                    service_idle(self.broker)
                    continue
                if item is None:
                    return
                fn, future = item
                if not future.set_running_or_notify_cancel():
                    continue
                try:
                    future.set_result(fn())
                except BaseException as e:  # handed to the caller, who raises it
                    future.set_exception(e)
        finally:
            drop_connection(self.broker)


def thread_connection(broker: Any) -> Any:
    """The calling thread's AMQP connection of ``broker`` (Dramatiq keeps one per thread), or None."""
    return getattr(getattr(broker, "state", None), "connection", None)


def pump_interval(broker: Any) -> float:
    """How long the calling thread's idle connection may go unserviced: ``PUMP_INTERVAL_S``, or a
    quarter of a shorter negotiated heartbeat, so the broker never misses two heartbeats."""
    params = getattr(getattr(thread_connection(broker), "_impl", None), "params", None)
    heartbeat = getattr(params, "heartbeat", None)
    if isinstance(heartbeat, int | float) and heartbeat > 0:
        return min(PUMP_INTERVAL_S, max(0.2, heartbeat / 4))
    return PUMP_INTERVAL_S


def service_idle(broker: Any) -> None:
    """Service the calling thread's idle connection (heartbeats); drop it if it is gone, so the next
    publish opens a new one."""
    connection = thread_connection(broker)
    if connection is None:
        return
    try:
        if connection.is_open:
            connection.process_data_events(time_limit=0)
            return
    except Exception as e:
        log.info("idle publisher connection lost (%s); the next publish reconnects", type(e).__name__)
    drop_connection(broker)


def check_connection(broker: Any) -> None:
    """Service the calling thread's connection of ``broker`` (heartbeats) and open one if it has
    none: raises when RabbitMQ cannot be reached. A process's health checker calls it, so "connected
    to RabbitMQ" is the state of a connection it keeps, not a new one per probe."""
    service_idle(broker)
    if not broker.connection.is_open:
        drop_connection(broker)
        raise ConnectionError("the AMQP connection is closed")


def drop_connection(broker: Any) -> None:
    """Close and forget the calling thread's connection (Dramatiq's deleter closes it)."""
    if thread_connection(broker) is not None:
        try:
            del broker.connection
        except Exception as e:
            log.debug("closing a publisher connection: %s: %s", type(e).__name__, e)
