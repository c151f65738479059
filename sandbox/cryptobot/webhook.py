"""Webhook delivery of the fake Crypto Pay: the ``invoice_paid`` update's exact bytes and headers, the
HTTP POST, and :class:`Courier`, the background thread that sends them in due-time order.

Each attempt is built afresh (CONTRACTS.md): a new ``request_date``, the body as compact JSON with
non-ASCII unescaped, signed with HMAC-SHA256 keyed by SHA-256(app token) over exactly those bytes,
``Content-Type: application/json;charset=utf-8`` and the lowercase ``crypto-pay-api-signature`` header.
"""

from __future__ import annotations

import heapq
import http.client
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from sandbox.cryptobot.format import SIGNATURE_HEADER, WEBHOOK_CONTENT_TYPE, compact_json, iso_ms, sign
from sandbox.cryptobot.guards import AttemptFaults

USER_AGENT = "cybervpn-sandbox-cryptopay"


@dataclass(frozen=True)
class WebhookConfig:
    """Where updates go; ``token`` signs them (``None``: the paying invoice's app token); a failed
    attempt (no answer or not 2xx) is tried again up to ``retries`` times, ``retry_interval_ms`` apart."""

    url: str
    token: str | None = None
    retries: int = 0
    retry_interval_ms: int = 1000
    timeout_s: float = 5.0

    def as_json(self) -> dict[str, Any]:
        """The config as the admin API shows it (``token_set``, never the token itself)."""
        return {
            "url": self.url,
            "token_set": self.token is not None,
            "retries": self.retries,
            "retry_interval_ms": self.retry_interval_ms,
            "timeout_s": self.timeout_s,
        }


@dataclass(frozen=True)
class Job:
    """One delivery to make: update ``update_id`` for ``invoice`` (the Invoice object at payment), signed
    by ``token``; ``copy`` counts duplicates of the update, ``attempt`` retries of one copy."""

    update_id: int
    invoice: dict[str, Any]
    token: str
    copy: int
    attempt: int
    generation: int

    def retry(self) -> Job:
        """The next attempt of the same copy."""
        return replace(self, attempt=self.attempt + 1)


def update_body(job: Job, request_date: float) -> bytes:
    """The ``invoice_paid`` update's bytes as sent and signed."""
    update = {
        "update_id": job.update_id,
        "update_type": "invoice_paid",
        "request_date": iso_ms(request_date),
        "payload": job.invoice,
    }
    return compact_json(update)


def post(url: str, body: bytes, signature: str, timeout_s: float) -> tuple[int | None, str | None]:
    """POST ``body`` to ``url``: (HTTP status, None), or (None, what went wrong) without an answer."""
    parts = urlsplit(url)
    connection_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    connection = connection_class(parts.hostname or "", parts.port, timeout=timeout_s)
    headers = {"Content-Type": WEBHOOK_CONTENT_TYPE, SIGNATURE_HEADER: signature, "User-Agent": USER_AGENT}
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        connection.request("POST", target, body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status, None
    except (OSError, http.client.HTTPException) as e:
        return None, f"{type(e).__name__}: {e}"
    finally:
        connection.close()


def attempt(job: Job, config: WebhookConfig, faults: AttemptFaults) -> dict[str, Any]:
    """Make one delivery attempt of ``job`` as ``config`` and ``faults`` say; its delivery-log entry
    (``status``: the HTTP status answered, ``"error"`` for no answer, ``"lost"`` when never sent)."""
    sent_at = time.time()
    request_date = sent_at - faults.age_s
    body = update_body(job, request_date)
    token = config.token or job.token
    signature = sign(f"wrong:{token}" if faults.wrong_signature else token, body)
    status, error = (None, None) if faults.lost else post(config.url, body, signature, config.timeout_s)
    return {
        "update_id": job.update_id,
        "invoice_id": job.invoice["invoice_id"],
        "copy": job.copy,
        "attempt": job.attempt,
        "url": config.url,
        "status": "lost" if faults.lost else "error" if status is None else status,
        "error": error,
        "body": body.decode("utf-8"),
        "signature": signature,
        "signature_valid": not faults.wrong_signature,
        "request_date": iso_ms(request_date),
        "at": sent_at,
        "duration_ms": round((time.time() - sent_at) * 1000, 1),
    }


def failed(entry: dict[str, Any]) -> bool:
    """Whether a delivery attempt failed in a way the sender sees (no answer, or not 2xx): worth a retry."""
    status = entry["status"]
    return status == "error" or (isinstance(status, int) and not 200 <= status < 300)


class Courier:
    """Runs ``send(job)`` for each job once it is due, one at a time, on a daemon thread that exists only
    while jobs are waiting. ``send`` returns ``(job, delay_s)`` to schedule a retry, or ``None``."""

    def __init__(self, send: Callable[[Job], tuple[Job, float] | None], name: str) -> None:
        self._send = send
        self._name = name
        self._ready = threading.Condition()
        self._heap: list[tuple[float, int, Job]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None
        self._busy = False

    def put(self, job: Job, delay_s: float = 0.0) -> None:
        """Send ``job`` in ``delay_s`` seconds (after the jobs due before it)."""
        with self._ready:
            heapq.heappush(self._heap, (time.monotonic() + delay_s, next(self._order), job))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._ready.notify()

    def clear(self) -> None:
        """Forget every job not yet sent (one being sent finishes)."""
        with self._ready:
            self._heap.clear()
            self._ready.notify()

    def idle(self) -> bool:
        """True when nothing is waiting or being sent."""
        with self._ready:
            return not self._heap and not self._busy

    def _run(self) -> None:
        while True:
            job = self._next_due()
            if job is None:
                return
            try:
                again = self._send(job)
            finally:
                with self._ready:
                    self._busy = False
            if again is not None:
                self.put(*again)

    def _next_due(self) -> Job | None:
        with self._ready:
            while True:
                if not self._heap:
                    self._thread = None
                    return None
                wait_s = self._heap[0][0] - time.monotonic()
                if wait_s <= 0:
                    self._busy = True
                    return heapq.heappop(self._heap)[2]
                self._ready.wait(wait_s)
