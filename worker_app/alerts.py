"""Admin alerts over Telegram: one message per new kind of failure, never on the message path.

Every alert has a **fingerprint** naming its kind of failure — for a dead letter or a bug, the actor,
the error type and the error message with its variable parts (numbers, ids, quoted values)
normalised (:func:`fingerprint`); for an incident a domain raises, its own key
(``notifications.retries_exhausted``, ``health:node-7:offline``). The first alert of a fingerprint
is sent at once and opens a window of ``ADMIN_ALERT_DEDUP_S`` seconds, fleet-wide (Redis): further
alerts of it in the window are only counted, and when the window closes one summary says how many
there were. A storm of 5,000 identical failures is two messages; three new bugs are three.

**Never blocking, never raising.** :meth:`AdminAlerts.raise_alert` only appends to an in-process
buffer (``ALERT_BUFFER_SIZE``; when full, the newest alerts are counted and dropped with one log
line) and returns; one thread per process (``alert-sender``) de-duplicates against Redis, records the
alert for ``worker-app alerts`` and sends. A message Telegram does not take (down, breaker open,
rate-limited) stays pending in that thread and is tried again with a backoff until it is sent, so the
alerts of an outage go out once Telegram is back; failures are logged, never raised.

**Who and how loud** (:data:`SILENT`): every severity goes to ``ADMIN_TELEGRAM_IDS``; ``critical``
also to ``CRITICAL_TELEGRAM_IDS``. ``info`` and ``warning`` arrive silently (no sound), ``error``
and ``critical`` with one. Alerts are plain text (error messages may contain ``<``) and are always
logged too: with no admin ids configured the log line is what remains.

**Redis down: de-duplication fails open, to a window per process**, and the history is not kept.
Failing closed would silence exactly the alerts that report the outage; sending every alert would
flood the admins while everything fails at once.

Redis keys (all expire): ``cybervpn:alerts:window:<fp>`` (the open window, holding its id),
``cybervpn:alerts:window:<fp>:<id>`` (alerts counted in it), ``cybervpn:alerts:windows`` (sorted set
of windows by closing time, for the summaries), ``cybervpn:alerts:fp:<fp>`` (hash: the alert as
``worker-app alerts`` shows it) and ``cybervpn:alerts:recent`` (sorted set of fingerprints by last
occurrence, the newest ``ALERT_HISTORY_MAX`` kept for ``ALERT_HISTORY_DAYS``).
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

from worker_app.lazy import created_once
from worker_app.policies import SEVERITIES, Severity
from worker_app.redis_client import key
from worker_app.redis_fallback import RedisFallback
from worker_app.telegram.sender import DEFERRED, RETRY, SENT, TelegramSender
from worker_app.telegram.text import MAX_TEXT_CHARS

log = logging.getLogger(__name__)

LOG_LEVELS = {
    "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR, "critical": logging.CRITICAL,
}  # fmt: skip
SILENT: frozenset[str] = frozenset({"info", "warning"})
"""Severities delivered without a notification sound."""
KINDS = ("dead_letter", "unexpected_error", "incident", "report")
"""``fingerprint_kind``: a dead letter's exhaustion action, a bug's first occurrence, an incident a
domain raises itself, a failed job reported to whoever started it."""

WINDOWS_KEY = key("alerts", "windows")
RECENT_KEY = key("alerts", "recent")
_SEND_WAIT_S = 5.0
_SEND_BUDGET_S = 2.0
_MAX_BACKOFF_S = 10.0  # the breaker spares Telegram meanwhile: a retry it holds back costs nothing
_TICK_S = 1.0
_MAX_LOCAL_WINDOWS = 1000

# Records one occurrence (or ARGV[3] of them) of an alert; opens its window when none is open.
# Returns {1, window_id} when the window was opened by this call (send now), else {0, window_id}.
_ADMIT = """
local now, dedup, n = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local keep_ms, keep_n = tonumber(ARGV[9]), tonumber(ARGV[10])
redis.call('HSETNX', KEYS[3], 'first_at', now)
redis.call('HSET', KEYS[3], 'fingerprint', ARGV[4], 'severity', ARGV[5], 'kind', ARGV[6],
           'title', ARGV[7], 'text', ARGV[8], 'last_at', now)
redis.call('HINCRBY', KEYS[3], 'count', n)
redis.call('PEXPIRE', KEYS[3], keep_ms)
redis.call('ZADD', KEYS[4], now, ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - keep_ms)
redis.call('ZREMRANGEBYRANK', KEYS[4], 0, -keep_n - 1)
redis.call('HSET', KEYS[3], 'recipients', ARGV[11])
local open = redis.call('GET', KEYS[1])
if open then
  local counted = KEYS[1] .. ':' .. open
  redis.call('INCRBY', counted, n)
  redis.call('PEXPIRE', counted, dedup * 2 + 60000)
  return 0
end
redis.call('HINCRBY', KEYS[3], 'messages', 1)
if dedup > 0 then
  -- the window runs on Redis's clock, as its closing does (_CLOSE): hosts' clocks do not matter
  local t = redis.call('TIME')
  local id = t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000))
  redis.call('SET', KEYS[1], id, 'PX', dedup)
  redis.call('ZADD', KEYS[2], tonumber(id) + dedup, ARGV[4] .. '|' .. id)
  if n > 1 then redis.call('SET', KEYS[1] .. ':' .. id, n - 1, 'PX', dedup * 2 + 60000) end
end
return 1
"""

# Closes the windows due by Redis's clock, each by one caller: the window key goes (if it is still
# this window), and the count of what it suppressed is taken. Returns {fp1, n1, fp2, n2, ...}.
_CLOSE = """
local t = redis.call('TIME')
local now = tonumber(t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000)))
local out = {}
for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 100)) do
  if redis.call('ZREM', KEYS[1], member) == 1 then
    local at = string.find(member, '|[^|]*$')
    local fp, id = string.sub(member, 1, at - 1), string.sub(member, at + 1)
    local window = ARGV[1] .. fp
    if redis.call('GET', window) == id then redis.call('DEL', window) end
    local counted = redis.call('GETDEL', window .. ':' .. id)
    if counted then
      table.insert(out, fp)
      table.insert(out, counted)
    end
  end
end
return out
"""


@dataclass(frozen=True)
class AlertEvent:
    """One occurrence of something the admins must hear about."""

    kind: str
    severity: Severity
    fingerprint: str
    title: str
    """One line: what it is (listings, the summary)."""
    text: str
    """The whole message body."""
    recipients: tuple[int, ...] | None = None
    """``None``: chosen by severity."""
    at: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}, not {self.severity!r}")
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, not {self.kind!r}")


_VARIABLE_PARTS = [
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I), "<uuid>"),
    (re.compile(r"\b0x[0-9a-f]+\b", re.I), "<hex>"),
    (re.compile(r"\b(?=[0-9a-f]*\d)[0-9a-f]{12,}\b", re.I), "<hex>"),
    (re.compile(r"'[^']*'|\"[^\"]*\""), "<value>"),
    (re.compile(r"\d+(\.\d+)?"), "<n>"),
    (re.compile(r"\s+"), " "),
]


def normalise(message: str) -> str:
    """``message`` with its variable parts replaced, so one kind of failure has one fingerprint:
    "user 42 not found" and "user 43 not found" are the same bug."""
    text = message[:500]
    for pattern, replacement in _VARIABLE_PARTS:
        text = pattern.sub(replacement, text)
    return text.strip()[:200]


def fingerprint(kind: str, actor: str | None, error_type: str | None, message: str | None) -> str:
    """Stable id of a kind of failure: ``<kind>:<16 hex>`` of actor, error type and normalised
    message. The kind is part of it, so a bug's first-occurrence alert never suppresses the alert of
    the message dying of it later."""
    basis = "\x1f".join((kind, actor or "", error_type or "", normalise(message or "")))
    return f"{kind}:{hashlib.sha256(basis.encode()).hexdigest()[:16]}"


@created_once
def _metrics() -> tuple[Any, Any, Any]:
    import prometheus_client as prom

    return (
        prom.Counter(
            "cybervpn_alerts_total",
            "Alerts raised, before de-duplication.",
            ("severity", "fingerprint_kind"),
        ),
        prom.Counter(
            "cybervpn_alert_messages_total",
            "Alert messages to admins: sent, failed (Telegram refused it), dropped (too many unsent).",
            ("result",),
        ),
        prom.Counter(
            "cybervpn_alerts_dropped_total",
            "Alerts of a new fingerprint dropped: ALERT_BUFFER_SIZE fingerprints were waiting already.",
        ),
    )


@dataclass
class _Group:
    """The alerts of one fingerprint raised since the sender thread last took the inbox."""

    first: AlertEvent
    latest: AlertEvent
    count: int = 1


@dataclass
class _Pending:
    chat_id: int
    text: str
    silent: bool
    label: str
    next_at: float = 0.0
    tries: int = 0


class AdminAlerts:
    """Raises alerts without blocking and sends them from one thread; thread-safe."""

    def __init__(
        self,
        client: redis.Redis,
        sender: TelegramSender,
        admin_ids: Sequence[int],
        *,
        dedup_s: int,
        critical_ids: Sequence[int] = (),
        buffer_size: int = 10_000,
        history_days: int = 7,
        history_max: int = 1000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = client
        self._sender = sender
        self.admin_ids = tuple(admin_ids)
        self.critical_ids = tuple(critical_ids)
        self.dedup_s = dedup_s
        self.buffer_size = buffer_size
        self._keep_ms = history_days * 86_400_000
        self._keep_n = history_max
        self._clock = clock
        self._admit = client.register_script(_ADMIT)
        self._close = client.register_script(_CLOSE)
        self._lock = threading.Condition()
        self._inbox: dict[str, _Group] = {}
        self._dropped = 0
        self._busy = False
        self._thread: threading.Thread | None = None
        self._stop = False
        self._pending: deque[_Pending] = deque()
        self._local: dict[str, tuple[float, int, AlertEvent]] = {}
        self.redis_state = RedisFallback(
            "admin alert dedup", "one alert per fingerprint per window in each process"
        )

    # --- the caller's side: never blocks, never raises ------------------------------------------

    def alert(self, alert_key: str, text: str, *, severity: Severity = "warning") -> None:
        """Raise an incident named ``alert_key`` (its fingerprint): ``text`` is the message."""
        title = text.split("\n", 1)[0][:200]
        self.raise_alert(AlertEvent("incident", severity, f"incident:{alert_key}", title, text))

    def raise_alert(self, event: AlertEvent) -> None:
        """Queue ``event`` for the sender thread and return at once. Alerts of one fingerprint are
        merged while they wait (the first and the latest kept, the rest counted), so a storm takes
        one slot of ``ALERT_BUFFER_SIZE`` and a new fingerprint still finds room."""
        with self._lock:
            group = self._inbox.get(event.fingerprint)
            if group is not None:
                group.latest = event
                group.count += 1
                return
            if len(self._inbox) >= self.buffer_size:
                self._dropped += 1
                return
            self._inbox[event.fingerprint] = _Group(event, event)
            self._ensure_thread()
            self._lock.notify()

    def flush(self, timeout_s: float) -> bool:
        """Wait until every raised alert is processed and every message sent (or ``timeout_s``);
        whether everything went out. Used at shutdown and by tests."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            self._lock.notify()
            while self._inbox or self._busy or self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                for pending in self._pending:
                    pending.next_at = min(pending.next_at, self._clock())
                self._lock.notify()
                self._lock.wait(min(left, 0.05))
            return True

    def close(self, timeout_s: float = 5.0) -> None:
        """Flush for up to ``timeout_s``, then stop the thread and log whatever is still unsent (an
        alert raised later starts the thread again)."""
        self.flush(timeout_s)
        with self._lock:
            self._stop = True
            self._lock.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=_SEND_WAIT_S + 5)
        with self._lock:
            unsent = list(self._pending)
            waiting = list(self._inbox.values())
            self._pending.clear()
            self._inbox.clear()
        for pending in unsent:
            log.error(
                "admin alert %s to %s not sent before shutdown: %s",
                pending.label, pending.chat_id, pending.text,
            )  # fmt: skip
        for group in waiting:
            log.error(
                "admin alert %s (%d raised) not processed before shutdown: %s",
                group.first.fingerprint, group.count, group.first.text,
            )  # fmt: skip

    def pending_messages(self) -> int:
        """Messages waiting for Telegram."""
        with self._lock:
            return len(self._pending)

    # --- the sender thread -------------------------------------------------------------------------

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop = False
            self._thread = threading.Thread(target=self._run, name="alert-sender", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            with self._lock:
                if not self._inbox and not self._stop:
                    self._lock.wait(self._wait_s())
                if self._stop:
                    return
                batch, self._inbox = list(self._inbox.values()), {}
                dropped, self._dropped = self._dropped, 0
                self._busy = True
            try:
                self._step(batch, dropped)
            except Exception:  # the thread must outlive any bug in one step
                log.exception("admin alert sender: step failed")
                time.sleep(_TICK_S)
            finally:
                with self._lock:
                    self._busy = False
                    self._lock.notify_all()

    def _wait_s(self) -> float:
        """Until the next pending message is due, at most a tick (windows close on the tick)."""
        due = min((p.next_at for p in self._pending), default=None)
        return _TICK_S if due is None else min(_TICK_S, max(0.01, due - self._clock()))

    def _step(self, batch: list[_Group], dropped: int) -> None:
        raised, _messages, dropped_metric = _metrics()
        if dropped:
            dropped_metric.inc(dropped)
            log.error(
                "%d admin alert(s) of new fingerprints dropped: %d fingerprints (ALERT_BUFFER_SIZE) waited",
                dropped, self.buffer_size,
            )  # fmt: skip
        self._close_due_windows()  # first: a window that closed gets its summary before a new one opens
        for group in batch:
            first = group.first
            raised.labels(first.severity, first.kind).inc(group.count)
            if self._open_window(group):
                self._queue_message(first, _body(first))
            else:
                log.debug("admin alert %s suppressed (window open): %s", first.fingerprint, first.title)
        self._deliver_due()

    def _open_window(self, group: _Group) -> bool:
        """Count the group's alerts (the latest goes to the history); True when this opened the
        fingerprint's window (send its first alert now)."""
        return self.redis_state.run(
            lambda: self._open_shared(group), lambda: self._open_local(group.first, group.count)
        )

    def _open_shared(self, group: _Group) -> bool:
        latest, fp = group.latest, group.latest.fingerprint
        recipients = ",".join(map(str, latest.recipients)) if latest.recipients is not None else ""
        opened = self._admit(
            keys=[key("alerts", "window", fp), WINDOWS_KEY, key("alerts", "fp", fp), RECENT_KEY],
            args=[
                int(latest.at * 1000), self.dedup_s * 1000, group.count, fp, latest.severity, latest.kind,
                latest.title, latest.text[:MAX_TEXT_CHARS], self._keep_ms, self._keep_n, recipients,
            ],
        )  # fmt: skip
        return bool(int(opened))

    def _open_local(self, event: AlertEvent, n: int) -> bool:
        now = self._clock()
        until, counted, first = self._local.get(event.fingerprint, (0.0, 0, event))
        if until > now:
            self._local[event.fingerprint] = (until, counted + n, first)
            return False
        if len(self._local) >= _MAX_LOCAL_WINDOWS:
            self._close_local(now, force=True)
        if self.dedup_s:
            self._local[event.fingerprint] = (now + self.dedup_s, n - 1, event)
        return True

    def _close_due_windows(self) -> None:
        self._close_local(self._clock())
        if self.dedup_s:
            self.redis_state.run(self._close_shared, lambda: None)

    def _close_shared(self) -> None:
        closed = self._close(keys=[WINDOWS_KEY], args=[key("alerts", "window", "")])
        for fp, counted in zip(closed[::2], closed[1::2], strict=True):
            record = {str(k): str(v) for k, v in self._redis.hgetall(key("alerts", "fp", str(fp))).items()}
            event = _stored_event(str(fp), record)
            total = int(record.get("count", counted))
            self._queue_message(event, _summary(event, int(counted), self.dedup_s, total))

    def _close_local(self, now: float, *, force: bool = False) -> None:
        for fp, (until, counted, event) in list(self._local.items()):
            if until <= now or force:
                del self._local[fp]
                if counted:
                    self._queue_message(event, _summary(event, counted, self.dedup_s, None))

    def _queue_message(self, event: AlertEvent, body: str) -> None:
        log.log(LOG_LEVELS[event.severity], "admin alert %s: %s", event.fingerprint, body)
        recipients = event.recipients
        if recipients is None:
            recipients = self.admin_ids + (self.critical_ids if event.severity == "critical" else ())
        if not recipients:
            log.warning("admin alert %s not sent: ADMIN_TELEGRAM_IDS is empty", event.fingerprint)
        text = body[:MAX_TEXT_CHARS]
        for chat_id in dict.fromkeys(recipients):
            with self._lock:
                if len(self._pending) >= self.buffer_size:
                    oldest = self._pending.popleft()
                    _metrics()[1].labels("dropped").inc()
                    log.error(
                        "admin alert %s to %s dropped (too many unsent): %s",
                        oldest.label, oldest.chat_id, oldest.text,
                    )  # fmt: skip
                self._pending.append(_Pending(chat_id, text, event.severity in SILENT, event.fingerprint))

    def _deliver_due(self) -> None:
        """Send the messages due, for at most ``_SEND_BUDGET_S`` (then new alerts are taken in)."""
        messages = _metrics()[1]
        now = self._clock()
        budget_ends = time.monotonic() + _SEND_BUDGET_S
        with self._lock:
            due = [p for p in self._pending if p.next_at <= now]
        for pending in due:
            if time.monotonic() > budget_ends:
                break
            delivery = self._sender.send(
                pending.chat_id, pending.text, None, max_wait_s=_SEND_WAIT_S, silent=pending.silent
            )
            if delivery.status in (DEFERRED, RETRY):
                pending.tries += 1
                backoff_s = max(delivery.wait_s, min(_MAX_BACKOFF_S, 2.0**pending.tries))
                pending.next_at = self._clock() + backoff_s
                if pending.tries == 1:
                    log.warning(
                        "admin alert %s to %s not sent yet (%s); kept and tried again",
                        pending.label, pending.chat_id, delivery.error,
                    )  # fmt: skip
                continue
            with self._lock:
                self._pending.remove(pending)
            if delivery.status == SENT:
                messages.labels("sent").inc()
            else:
                messages.labels("failed").inc()
                log.error(
                    "admin alert %s to %s not delivered (%s): %s",
                    pending.label, pending.chat_id, delivery.status, delivery.error,
                )  # fmt: skip


def _stored_event(fp: str, record: dict[str, str]) -> AlertEvent:
    """The alert of ``fp`` as the Redis history holds it (for the summary of its window)."""
    severity = record.get("severity", "warning")
    kind = record.get("kind", "incident")
    recipients = record.get("recipients")
    return AlertEvent(
        kind if kind in KINDS else "incident",
        severity if severity in SEVERITIES else "warning",
        fp,
        record.get("title", fp),
        record.get("text", ""),
        recipients=tuple(int(r) for r in recipients.split(",")) if recipients else None,
    )


def _body(event: AlertEvent) -> str:
    return f"[{event.severity.upper()}] {event.text}"


def _summary(event: AlertEvent, counted: int, window_s: int, total: int | None) -> str:
    """The message closing a window: how many more there were, and the latest of them."""
    since = f"; {total} in all since it first appeared" if total and total > counted + 1 else ""
    window = _duration(window_s)
    head = f"[{event.severity.upper()}] {counted} more in the last {window}"
    return f"{head} (window closed{since}): {event.title}"


def _duration(seconds: int) -> str:
    if seconds % 3600 == 0 and seconds >= 3600:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0 and seconds >= 60:
        return f"{seconds // 60} min"
    return f"{seconds} s"


def recent_alerts(
    client: redis.Redis, limit: int = 50, *, severity: str | None = None, kind: str | None = None,
    since: float | None = None, until: float | None = None,
) -> list[dict[str, Any]]:  # fmt: skip
    """The most recently raised alerts (newest first), one per fingerprint, with their counts,
    optionally of one severity or kind, or last raised within ``[since, until)`` (unix seconds: only
    those fingerprints are read); raises :class:`redis.RedisError` when Redis is unreachable."""
    newest = "+inf" if until is None else f"({until * 1000}"
    oldest = "-inf" if since is None else since * 1000
    # scored by the last raise (ms), at most ALERT_HISTORY_MAX
    fingerprints = client.zrevrangebyscore(RECENT_KEY, newest, oldest)
    pipe = client.pipeline(transaction=False)
    for fp in fingerprints:
        pipe.hgetall(key("alerts", "fp", str(fp)))
    found: list[dict[str, Any]] = []
    for record in pipe.execute():
        if (
            not record
            or (severity and record.get("severity") != severity)
            or (kind and record.get("kind") != kind)
        ):
            continue
        if len(found) == limit:
            break
        found.append({
            "fingerprint": record.get("fingerprint"),
            "kind": record.get("kind"),
            "severity": record.get("severity"),
            "title": record.get("title"),
            "text": record.get("text"),
            "count": int(record.get("count", 0)),
            "messages": int(record.get("messages", 0)),
            "first_at": int(record.get("first_at", 0)) / 1000,
            "last_at": int(record.get("last_at", 0)) / 1000,
        })  # fmt: skip
    return found
