"""Admin alerts over Telegram, de-duplicated so that one incident is one message.

Every domain calls :meth:`AdminAlerts.alert` with a stable ``key`` naming the incident (e.g.
``notifications.retries_exhausted`` or ``health:node-7:offline``). The first alert of a key sends
to every ``ADMIN_TELEGRAM_IDS`` chat and opens a window of ``ADMIN_ALERT_DEDUP_S`` seconds in
which further alerts with that key are only counted; the first alert after the window says how
many were suppressed. Alerts are sent as plain text (no parse mode: error messages may contain
``<``) through the shared rate limits, and are always logged too — with no admin ids configured,
or when Telegram is down, the log line is what remains.

**Redis down: de-duplication fails open, to a window per process.** Each worker process then keeps
its own windows in memory, so an incident reaches the admins once per process per window instead of
once per fleet. Failing closed (suppressing) would silence exactly the alerts that report the outage
— "Redis unreachable" among them — and sending every alert would flood the admins while everything
fails at once; a per-process window keeps both risks small.

Keys: ``cybervpn:alerts:<key>`` (the open window) and ``cybervpn:alerts:<key>:suppressed``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

import redis

from worker_app.notifications.redis_fallback import RedisFallback
from worker_app.notifications.sender import SENT, TelegramSender
from worker_app.notifications.text import MAX_TEXT_CHARS
from worker_app.redis_client import key

log = logging.getLogger(__name__)

SEVERITIES = {"info": logging.INFO, "warning": logging.WARNING, "critical": logging.CRITICAL}
_ALERT_MAX_WAIT_S = 10.0
_MAX_LOCAL_WINDOWS = 1000


def window_key(alert_key: str) -> str:
    """Redis key of the open de-duplication window of ``alert_key``."""
    return key("alerts", alert_key)


class AdminAlerts:
    """Sends alerts to the admins; thread-safe."""

    def __init__(
        self,
        client: redis.Redis,
        sender: TelegramSender,
        admin_ids: Sequence[int],
        *,
        dedup_s: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis = client
        self._sender = sender
        self.admin_ids = tuple(admin_ids)
        self.dedup_s = dedup_s
        self._clock = clock
        self._lock = threading.Lock()
        self._local: dict[str, tuple[float, int]] = {}
        self.redis_state = RedisFallback("admin alert dedup", "one alert per key per window in each process")

    def alert(self, alert_key: str, text: str, *, severity: str = "warning") -> bool:
        """Alert the admins about ``alert_key`` unless it was alerted within the window.

        Returns whether a message was attempted (False: suppressed as a duplicate).
        """
        level = SEVERITIES[severity]
        suppressed = self._open_window(window_key(alert_key))
        if suppressed is None:
            log.log(level, "admin alert %s (suppressed duplicate): %s", alert_key, text)
            return False
        body = f"[{severity.upper()}] {text}"
        if suppressed:
            body += f"\n({suppressed} similar alert(s) suppressed in the last window)"
        log.log(level, "admin alert %s: %s", alert_key, body)
        self._send(alert_key, body[:MAX_TEXT_CHARS])
        return True

    def _open_window(self, window: str) -> int | None:
        """Open the de-duplication window: None when one is open already (the alert is a duplicate),
        else how many duplicates the previous window suppressed."""
        if not self.dedup_s:
            return 0
        return self.redis_state.run(lambda: self._open_shared(window), lambda: self._open_local(window))

    def _open_shared(self, window: str) -> int | None:
        if not self._redis.set(window, "1", nx=True, ex=self.dedup_s):
            self._redis.incr(f"{window}:suppressed")
            self._redis.expire(f"{window}:suppressed", self.dedup_s * 2)
            return None
        return int(self._redis.getdel(f"{window}:suppressed") or 0)

    def _open_local(self, window: str) -> int | None:
        with self._lock:
            now = self._clock()
            until, suppressed = self._local.get(window, (0.0, 0))
            if until > now:
                self._local[window] = (until, suppressed + 1)
                return None
            if len(self._local) >= _MAX_LOCAL_WINDOWS:
                self._local = {w: v for w, v in self._local.items() if v[0] > now}
            self._local[window] = (now + self.dedup_s, 0)
            return suppressed

    def _send(self, alert_key: str, body: str) -> None:
        if not self.admin_ids:
            log.warning("admin alert %s not sent: ADMIN_TELEGRAM_IDS is empty", alert_key)
        for admin_id in self.admin_ids:
            delivery = self._sender.send(admin_id, body, None, max_wait_s=_ALERT_MAX_WAIT_S)
            if delivery.status != SENT:
                log.error(
                    "admin alert %s to %s not delivered (%s): %s",
                    alert_key, admin_id, delivery.status, delivery.error,
                )  # fmt: skip
