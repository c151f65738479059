"""The ``notification_queue`` consumer: claim due rows, send them, settle them, until none are due.

A *drain* repeats one step until no row is due, its time budget ends, or Telegram asks everyone to
pause — or the circuit breaker holds sends back — for longer than the budget has left:

1. in one transaction, claim up to ``batch_size`` due ``pending`` rows with
   ``FOR UPDATE SKIP LOCKED`` — rows another drain (any process, any host) holds are skipped, not
   waited on, so two drains never send the same row; rows of a cancelled broadcast are never
   claimed (:func:`~actors.notifications.broadcast_cancel.cancel_broadcast` withdraws them);
2. send them concurrently (``concurrency`` threads) through :class:`TelegramSender`, inside the
   fleet-wide rate limits;
3. write every row's outcome in one ``UPDATE ... FROM unnest(...)`` and commit, releasing the locks.

Outcomes per row (ARCHITECTURE.md §3, notifications): sent → ``sent``, ``sent_at``, Telegram's
``message_id``; transient failure → ``attempts + 1``, ``error_message`` and the next attempt after
30 s, 1 m, 5 m, 15 m, 1 h; the ``max_retries``-th failure, or a permanent one (403, chat-level 400,
text Telegram will never take) → ``failed``; rate limited, 429 or circuit breaker open → back to
``pending`` after the wait, ``attempts`` unchanged; a wrong bot token (401/404) → back to ``pending``
and the drain stops.

While the breaker is open the drain does not claim rows only to defer them: it waits for the
cooldown (or stops, ``breaker``, when the cooldown outlasts its budget; the next tick resumes), and
the step after a cooldown claims a single row, the breaker's probe, before full batches resume.

``PROCESS_NOTIFICATION_QUEUE_BATCH_LIMIT`` caps the rows one drain claims (each claim counts, a
deferred row claimed again included): no batch claims more than the room left, and the drain stops
``batch limit`` without re-enqueueing itself, so the rest wait for the next tick.

Delivery is at-least-once, with duplicates bounded by the sends in flight: a worker killed (or
PostgreSQL restarting) after Telegram accepted a message but before the commit leaves the row
pending, but the send was recorded in the sent journal (:mod:`worker_app.telegram.journal`)
the moment Telegram answered, so the next drain settles it from there instead of sending it again.
"""

from __future__ import annotations

import contextvars
import heapq
import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import dramatiq
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from actors.notifications import broadcast, metrics
from actors.notifications.slots import DrainerSlots
from worker_app.context import current_message_id
from worker_app.db import Database
from worker_app.errors import ConfigurationError
from worker_app.policies import RetryPolicy, Skip
from worker_app.runtime import Runtime, get_runtime
from worker_app.telegram.journal import SendJournal, row_key
from worker_app.telegram.sender import DEFERRED, FAILED, HALT, RETRY, SENT, Delivery, TelegramSender
from worker_app.telegram.text import NotificationRejected, check_text

QUEUE = "notifications"
JOB = "process_notification_queue"
log = logging.getLogger(__name__)

BACKOFF_S = (30, 60, 300, 900, 3600)
"""Wait before the next attempt after the 1st, 2nd, ... transient failure (the last repeats)."""
HALT_RETRY_S = 60.0
_DUE_MARGIN_S = 0.05
"""A deferred row is claimed this long after its due time (PostgreSQL's clock is not ours)."""

DUE = "status = 'pending' AND next_attempt_at <= now() AND scheduled_at <= now()"
"""SQL condition of a ``notification_queue`` row that is due to be sent now."""

_CLAIM = text(
    f"""
    SELECT n.id, n.telegram_id, n.message, n.parse_mode, n.notification_type, n.attempts,
           extract(epoch FROM greatest(n.created_at, n.scheduled_at))::float8 AS due_epoch,
           b.broadcast_id
    FROM notification_queue AS n
    LEFT JOIN notification_broadcast_items AS b ON b.notification_id = n.id
    LEFT JOIN notification_broadcasts AS nb ON nb.id = b.broadcast_id
    WHERE {DUE} AND nb.cancelled_at IS NULL
    ORDER BY n.next_attempt_at
    LIMIT :limit
    FOR UPDATE OF n SKIP LOCKED
    """
)
_SETTLE = text(
    """
    UPDATE notification_queue AS n
    SET status = v.status,
        attempts = v.attempts,
        next_attempt_at = clock_timestamp() + make_interval(secs => v.delay_s),
        sent_at = CASE WHEN v.sent_epoch IS NULL THEN n.sent_at ELSE to_timestamp(v.sent_epoch) END,
        telegram_message_id = coalesce(v.message_id, n.telegram_message_id),
        error_message = v.error,
        updated_at = clock_timestamp()
    FROM unnest(
        CAST(:ids AS uuid[]), CAST(:statuses AS text[]), CAST(:attempts AS int[]),
        CAST(:delays AS float8[]), CAST(:sent AS float8[]), CAST(:message_ids AS bigint[]),
        CAST(:errors AS text[])
    ) AS v(id, status, attempts, delay_s, sent_epoch, message_id, error)
    WHERE n.id = v.id
    """
)


@dataclass(frozen=True)
class Row:
    """A claimed ``notification_queue`` row (only what sending needs)."""

    id: uuid.UUID
    telegram_id: int
    message: str
    parse_mode: str | None
    notification_type: str
    attempts: int
    due_epoch: float
    broadcast_id: str | None = None


@dataclass(frozen=True)
class Settlement:
    """The row's new state, as written by the settle statement."""

    status: str
    attempts: int
    delay_s: float = 0.0
    exhausted: bool = False


@dataclass(frozen=True)
class DrainConfig:
    """Limits of one drain (from NOTIFICATION_* settings)."""

    batch_size: int = 50
    max_retries: int = 5
    budget_s: float = 25.0
    max_wait_s: float = 5.0
    poll_interval_s: float = 0.0
    """When > 0, a drain with nothing due keeps polling at this interval until its budget ends."""


@dataclass
class DrainReport:
    """What one drain did. ``stopped``: ``empty`` (nothing due), ``budget`` (time is up),
    ``paused`` (a 429 pause outlasts the budget), ``breaker`` (Telegram is down: the circuit breaker
    stays open past the budget), ``halt`` (bad bot token), ``shutdown``, ``batch limit`` (claimed
    ``batch_limit`` rows)."""

    batches: int = 0
    sent: int = 0
    retried: int = 0
    failed: int = 0
    deferred: int = 0
    stopped: str = ""
    exhausted: list[tuple[Row, str]] = field(default_factory=list)
    halt_error: str | None = None
    deferred_due: list[float] = field(default_factory=list)
    """Heap of the (monotonic) times at which rows this drain deferred are due again."""
    batch_limit: int | None = None
    """The most rows this drain may claim (``None``: no cap)."""

    def room(self, batch: int) -> int:
        """How many rows the next claim may take: ``batch``, or fewer near the batch limit."""
        if self.batch_limit is None:
            return batch
        return min(batch, self.batch_limit - (self.sent + self.retried + self.failed + self.deferred))

    def summary(self) -> dict[str, object]:
        """JSON-able counts (the actor's result and log line)."""
        counts: dict[str, object] = {
            "batches": self.batches, "sent": self.sent, "retried": self.retried, "failed": self.failed,
            "deferred": self.deferred, "stopped": self.stopped,
        }  # fmt: skip
        if self.batch_limit is not None:
            counts["batch_limit"] = self.batch_limit
        return counts


def settle(row: Row, delivery: Delivery, max_retries: int) -> Settlement:
    """The row's next state after ``delivery`` (pure; the backoff table lives here)."""
    if delivery.status == SENT:
        return Settlement("sent", row.attempts)
    if delivery.status == FAILED:
        return Settlement("failed", row.attempts + 1)
    if delivery.status == RETRY:
        attempts = row.attempts + 1
        if attempts >= max_retries:
            return Settlement("failed", attempts, exhausted=True)
        return Settlement("pending", attempts, float(BACKOFF_S[min(attempts, len(BACKOFF_S)) - 1]))
    wait_s = HALT_RETRY_S if delivery.status == HALT else delivery.wait_s
    return Settlement("pending", row.attempts, max(wait_s, 1.0))


class QueueDrainer:
    """Drains ``notification_queue``; one per process, thread-safe, sends on a shared pool."""

    def __init__(
        self,
        database: Database,
        sender: TelegramSender,
        pool: ThreadPoolExecutor,
        config: DrainConfig,
        *,
        stopping: threading.Event | None = None,
        after_batch: Callable[[set[str]], object] | None = None,
        journal: SendJournal | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.database = database
        self.sender = sender
        self.pool = pool
        self.config = config
        self.stopping = stopping if stopping is not None else threading.Event()
        self.after_batch = after_batch
        """Called after each commit with the broadcast ids the batch touched (progress refresh)."""
        self.journal = journal
        """Sends Telegram accepted, recorded at once: a batch cut off before its commit (a killed
        worker, PostgreSQL restarting) is settled from it instead of being sent again."""
        self._clock = clock

    def close(self) -> None:
        """Stop the send threads (after the sends in progress)."""
        self.pool.shutdown()

    def drain(self, limit: int | None = None) -> DrainReport:
        """Claim, send and settle batches until none is due (or, lingering, the budget ends), or
        ``limit`` rows were claimed (``None``: no cap)."""
        deadline = self._clock() + self.config.budget_s
        report = DrainReport(batch_limit=limit)
        while not report.stopped:
            report.stopped = "batch limit" if report.room(1) <= 0 else self._reason_to_stop(deadline)
            if not report.stopped and not self._step(report, deadline) and not self._idle(report, deadline):
                report.stopped = "empty"
        return report

    def _reason_to_stop(self, deadline: float) -> str:
        """Why the drain must end now ("" to go on); sits out a fleet-wide pause or an open circuit
        breaker that ends within the budget."""
        while True:
            remaining = deadline - self._clock()
            if self.stopping.is_set():
                return "shutdown"
            if remaining <= 0:
                return "budget"
            reason, wait_s = self._held_back()
            if not wait_s:
                return ""
            if wait_s >= remaining:
                return reason
            self.stopping.wait(wait_s)

    def _held_back(self) -> tuple[str, float]:
        """What keeps every send back right now, and for how long (0: nothing)."""
        paused = self.sender.limiter.paused_for()
        if paused:
            return "paused", paused
        return "breaker", self.sender.breaker.blocked_for()

    def _idle(self, report: DrainReport, deadline: float) -> bool:
        """Nothing is due: wait for rows this drain deferred, or linger for new ones; False to stop."""
        now = self._clock()
        due = report.deferred_due
        while due and due[0] + _DUE_MARGIN_S <= now:  # sent since, or taken by another drain
            heapq.heappop(due)
        poll_s = self.config.poll_interval_s
        waits = [w for w in (due[0] + _DUE_MARGIN_S - now if due else 0.0, poll_s) if w]
        remaining = deadline - now
        if not waits or (not poll_s and min(waits) >= remaining):
            return False
        self.stopping.wait(max(0.0, min(*waits, remaining)))
        return True

    def _step(self, report: DrainReport, deadline: float) -> bool:
        """One claim-send-settle round; False when nothing was due."""
        limit = report.room(self.config.batch_size if self.sender.breaker.closed else 1)  # 1: the probe
        with self.database.transaction() as session:
            rows = claim(session, limit)
            if not rows:
                return False
            known = self.journal.lookup([row_key(r.id) for r in rows]) if self.journal else {}
            deliveries = self._send_all(rows, deadline, known)
            settlements = [
                settle(r, d, self.config.max_retries) for r, d in zip(rows, deliveries, strict=True)
            ]
            write(session, rows, deliveries, settlements)
        if self.journal is not None:  # PostgreSQL holds these outcomes now
            self.journal.forget(
                [row_key(r.id) for r, d in zip(rows, deliveries, strict=True) if d.status == SENT]
            )
        _account(report, rows, deliveries, settlements, self._clock())
        touched = {r.broadcast_id for r in rows if r.broadcast_id is not None}
        if touched and self.after_batch is not None:
            self.after_batch(touched)
        return True

    def _send_all(self, rows: Sequence[Row], deadline: float, known: dict[str, Delivery]) -> list[Delivery]:
        """Send every row the journal does not already know as sent; deliveries in ``rows``' order."""
        futures = {
            row.id: self.pool.submit(contextvars.copy_context().run, self._deliver, row, deadline)
            for row in rows
            if row_key(row.id) not in known
        }
        return [known[row_key(r.id)] if r.id not in futures else futures[r.id].result() for r in rows]

    def _deliver(self, row: Row, deadline: float) -> Delivery:
        try:
            mode = check_text(row.message, row.parse_mode)
        except NotificationRejected as e:
            return Delivery(FAILED, error=f"rejected before sending: {e}")
        max_wait_s = max(0.0, min(self.config.max_wait_s, deadline - self._clock()))
        delivery = self.sender.send(row.telegram_id, row.message, mode, max_wait_s=max_wait_s)
        if delivery.status == SENT and self.journal is not None:
            self.journal.record(row_key(row.id), delivery)
        return delivery


def claim(session: Session, limit: int) -> list[Row]:
    """Lock up to ``limit`` due pending rows, skipping rows locked by anyone else."""
    return [Row(*r) for r in session.execute(_CLAIM, {"limit": limit})]


def write(
    session: Session, rows: Sequence[Row], deliveries: Sequence[Delivery], settlements: Sequence[Settlement]
) -> None:
    """Write every row's settlement in one statement."""
    session.execute(
        _SETTLE,
        {
            "ids": [r.id for r in rows],
            "statuses": [s.status for s in settlements],
            "attempts": [s.attempts for s in settlements],
            "delays": [s.delay_s for s in settlements],
            "sent": [d.sent_at for d in deliveries],
            "message_ids": [d.message_id for d in deliveries],
            "errors": [None if d.status == SENT else d.error for d in deliveries],
        },
    )


def _account(
    report: DrainReport,
    rows: Sequence[Row],
    deliveries: Sequence[Delivery],
    settlements: Sequence[Settlement],
    now: float,
) -> None:
    report.batches += 1
    for delivery, settled in zip(deliveries, settlements, strict=True):
        if delivery.status == DEFERRED:
            heapq.heappush(report.deferred_due, now + settled.delay_s)
    for row, delivery, settled in zip(rows, deliveries, settlements, strict=True):
        counter, status = _OUTCOMES.get(
            FAILED if settled.exhausted else delivery.status, ("deferred", "deferred")
        )
        if settled.exhausted:
            report.exhausted.append((row, delivery.error or ""))
        setattr(report, counter, getattr(report, counter) + 1)
        metrics.count(row.notification_type, status)
        if delivery.status == SENT and delivery.sent_at is not None:
            metrics.observe_latency(row.notification_type, delivery.sent_at - row.due_epoch)
        if delivery.status == HALT:
            report.stopped, report.halt_error = "halt", delivery.error


_OUTCOMES = {SENT: ("sent", "sent"), RETRY: ("retried", "retry"), FAILED: ("failed", "failed")}
"""Delivery status -> (DrainReport counter, metric status); anything else is deferred."""


def drainer(runtime: Runtime) -> QueueDrainer:
    """This process's ``notification_queue`` consumer (``runtime.service(drainer)``), sending on
    NOTIFICATION_SEND_CONCURRENCY threads and refreshing broadcast progress after every batch."""
    s = runtime.settings
    pool = ThreadPoolExecutor(s.notification_send_concurrency, thread_name_prefix="telegram-send")
    config = DrainConfig(
        batch_size=s.notification_batch_size,
        max_retries=s.notification_max_retries,
        budget_s=s.notification_drain_budget_s,
        max_wait_s=s.notification_max_wait_s,
        poll_interval_s=s.notification_poll_interval_s,
    )
    return QueueDrainer(
        runtime.database,
        runtime.telegram_sender,
        pool,
        config,
        stopping=runtime.stopping,
        after_batch=lambda ids: broadcast.refresh_progress(runtime.database, runtime.redis, ids),
        journal=runtime.send_journal,
    )


def drainer_slots(runtime: Runtime) -> DrainerSlots:
    """The fleet-wide cap on concurrent drains (NOTIFICATION_DRAINERS), ``runtime.service(drainer_slots)``."""
    s = runtime.settings
    ttl_s = s.notification_drain_budget_s + 60
    return DrainerSlots(runtime.redis, max_holders=s.notification_drainers, ttl_s=ttl_s)


@dramatiq.actor(
    queue_name=QUEUE,
    retry_policy=RetryPolicy(0, when_exhausted=Skip()),  # recorded dead; the next tick drains again
)
def process_notification_queue() -> None:
    """Send every due ``notification_queue`` row (scheduled every 30 s; broadcasts also kick it).

    Runs only when one of NOTIFICATION_DRAINERS fleet-wide slots is free; drains (polling every
    NOTIFICATION_POLL_INTERVAL_S for new rows) until NOTIFICATION_DRAIN_BUDGET_S ends or the worker
    stops, then re-enqueues itself if it sent anything, so a busy queue is drained continuously —
    unless it stopped at PROCESS_NOTIFICATION_QUEUE_BATCH_LIMIT: then the rest wait for the next tick.
    Rows that used up their attempts raise one (de-duplicated) admin alert per drain.
    """
    runtime = get_runtime()
    slots = runtime.service(drainer_slots)
    holder = current_message_id()
    if not slots.acquire(holder):
        log.info("notification drain skipped: %d drains already running", slots.max_holders)
        return
    try:
        report = runtime.service(drainer).drain(runtime.settings.batch_limit(JOB))
        broadcast.refresh_progress(runtime.database, runtime.redis, broadcast.unsettled(runtime.database))
    except OperationalError as e:
        # PostgreSQL unreachable: nothing was claimed, so nothing is lost; the next tick drains again.
        # Not an error to retry or record dead, or every outage would leave a dead letter per tick.
        log.warning("notification drain skipped: database unavailable (%s); the next tick retries", e.orig)
        return
    finally:
        slots.release(holder)
    if report.exhausted:
        row, error = report.exhausted[-1]
        runtime.alerts.alert(
            "notifications.retries_exhausted",
            f"{len(report.exhausted)} notification(s) failed after "
            f"{runtime.settings.notification_max_retries} attempts; "
            f"last: {row.notification_type} to {row.telegram_id}: {error}",
        )
    if report.stopped == "halt":
        runtime.alerts.alert(
            "notifications.telegram_config",
            f"Telegram rejects the bot: {report.halt_error}",
            severity="critical",
        )
        raise ConfigurationError(f"notification drain stopped: {report.halt_error}")
    if report.stopped in ("budget", "paused", "breaker", "shutdown") and report.batches:
        process_notification_queue.send()  # rows may still be due: carry on in a fresh message
    log.info("notification drain: %s", report.summary())  # returns nothing: no result is stored
