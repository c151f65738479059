"""Admin alerts over Telegram, de-duplicated so that one incident is one message.

Every domain calls :meth:`AdminAlerts.alert` with a stable ``key`` naming the incident (e.g.
``notifications.retries_exhausted`` or ``health:node-7:offline``). The first alert of a key sends
to every ``ADMIN_TELEGRAM_IDS`` chat and opens a window of ``ADMIN_ALERT_DEDUP_S`` seconds in
which further alerts with that key are only counted; the first alert after the window says how
many were suppressed. Alerts are sent as plain text (no parse mode: error messages may contain
``<``) through the shared rate limits, and are always logged too — with no admin ids configured,
or when Telegram is down, the log line is what remains.

Keys: ``cybervpn:alerts:<key>`` (the open window) and ``cybervpn:alerts:<key>:suppressed``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import redis

from worker_app.notifications.sender import SENT, TelegramSender
from worker_app.notifications.text import MAX_TEXT_CHARS
from worker_app.redis_client import key

log = logging.getLogger(__name__)

SEVERITIES = {"info": logging.INFO, "warning": logging.WARNING, "critical": logging.CRITICAL}
_ALERT_MAX_WAIT_S = 10.0


def window_key(alert_key: str) -> str:
    """Redis key of the open de-duplication window of ``alert_key``."""
    return key("alerts", alert_key)


class AdminAlerts:
    """Sends alerts to the admins; thread-safe."""

    def __init__(
        self, client: redis.Redis, sender: TelegramSender, admin_ids: Sequence[int], *, dedup_s: int
    ) -> None:
        self._redis = client
        self._sender = sender
        self.admin_ids = tuple(admin_ids)
        self.dedup_s = dedup_s

    def alert(self, alert_key: str, text: str, *, severity: str = "warning") -> bool:
        """Alert the admins about ``alert_key`` unless it was alerted within the window.

        Returns whether a message was attempted (False: suppressed as a duplicate).
        """
        level = SEVERITIES[severity]
        window = window_key(alert_key)
        if self.dedup_s and not self._redis.set(window, "1", nx=True, ex=self.dedup_s):
            self._redis.incr(f"{window}:suppressed")
            self._redis.expire(f"{window}:suppressed", self.dedup_s * 2)
            log.log(level, "admin alert %s (suppressed duplicate): %s", alert_key, text)
            return False
        suppressed = int(self._redis.getdel(f"{window}:suppressed") or 0)
        body = f"[{severity.upper()}] {text}"
        if suppressed:
            body += f"\n({suppressed} similar alert(s) suppressed in the last window)"
        log.log(level, "admin alert %s: %s", alert_key, body)
        self._send(alert_key, body[:MAX_TEXT_CHARS])
        return True

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
