"""The fake Crypto Pay's state: :class:`CryptoBotState`, in memory and thread-safe, answers ``/api``
calls as CONTRACTS.md ("Crypto Pay API") says and delivers ``invoice_paid`` webhooks.

It is transport-free: the HTTP layer (:mod:`sandbox.cryptobot.app`) hands :meth:`CryptoBotState.handle`
the HTTP method, the API method name, the merged parameters and the headers, and writes back the
:class:`~sandbox.cryptobot.format.CpReply` — or, on ``None`` (the ``down`` fault), closes the connection
without an answer. Invoices are paid or expired through the admin API (:meth:`pay_invoice`,
:meth:`expire_invoice`); an invoice past its ``expiration_date`` expires by itself before every call.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from decimal import Decimal
from typing import Any

from sandbox.cryptobot import invoices
from sandbox.cryptobot.calls import Call, CallLog, Log
from sandbox.cryptobot.format import (
    APP_NAME,
    BOT_USERNAME,
    DEFAULT_TOKEN,
    ApiError,
    CpReply,
    app_id,
    invoice_hash,
    ok,
)
from sandbox.cryptobot.guards import Faults, server_error, take_attempt_faults, unauthorized
from sandbox.cryptobot.invoices import InvoiceRecord, invoice_json
from sandbox.cryptobot.params import Params
from sandbox.cryptobot.webhook import Courier, Job, WebhookConfig, attempt, failed

Method = Callable[["CryptoBotState", str, Params], CpReply]
TOKEN_HEADER = "crypto-pay-api-token"


class CryptoBotState:
    """Everything the fake Crypto Pay remembers; every public method is thread-safe.

    ``tokens`` are the app tokens accepted from the start (``reset`` returns to them); each token is
    an app of its own (its invoices are its alone). The logs keep the last ``max_entries`` calls and
    delivery attempts.
    """

    def __init__(self, tokens: Iterable[str] = (DEFAULT_TOKEN,), *, max_entries: int = 100_000) -> None:
        self._lock = threading.Lock()
        self._seed_tokens = frozenset(tokens)
        self._max_entries = max_entries
        self._wake = threading.Event()
        self._courier = Courier(self._deliver, "cryptobot-webhooks")
        self._generation = 0  # a call or delivery from before a reset is not logged after it
        self.reset()

    def reset(self) -> None:
        """Forget invoices, added tokens, faults, the webhook, the logs and counters; drop pending
        deliveries and wake calls sleeping on latency. Invoice and update ids start from 1 again."""
        with self._lock:
            self._generation += 1
            self._tokens = set(self._seed_tokens)
            self._invoices: dict[int, InvoiceRecord] = {}
            self._expiries: list[tuple[float, int]] = []
            self._next_update_id = 1
            self._faults = Faults()
            self._webhook: WebhookConfig | None = None
            self._calls = CallLog(self._max_entries)
            self._deliveries = Log(self._max_entries)
        self.wake_sleepers()

    def wake_sleepers(self) -> None:
        """Release calls sleeping on injected latency and drop deliveries not yet sent (reset, shutdown)."""
        self._courier.clear()
        self._release_latency()

    def _release_latency(self) -> None:
        self._wake.set()
        self._wake = threading.Event()

    def add_token(self, token: str) -> None:
        """Accept ``token`` (another app) from now on."""
        with self._lock:
            self._tokens.add(token)

    def set_faults(self, **settings: Any) -> None:
        """Change the named :class:`~sandbox.cryptobot.guards.Faults` fields, leaving the others."""
        unknown = set(settings) - set(vars(Faults()))
        if unknown:
            raise ValueError(f"unknown fault settings: {sorted(unknown)}")
        with self._lock:
            for name, value in settings.items():
                setattr(self._faults, name, value)
        if "latency_ms" in settings:
            self._release_latency()

    def faults(self) -> dict[str, Any]:
        """The current fault settings (counts show what is left)."""
        with self._lock:
            return dict(vars(self._faults))

    def set_webhook(self, config: WebhookConfig | None) -> None:
        """Deliver ``invoice_paid`` updates as ``config`` says from now on (``None``: no webhook)."""
        with self._lock:
            self._webhook = config

    def webhook(self) -> dict[str, Any] | None:
        """The webhook settings (without the signing token), or ``None``."""
        with self._lock:
            return None if self._webhook is None else self._webhook.as_json()

    # --- invoices (the admin API and tests) ---

    def invoices(self, status: str | None = None) -> list[dict[str, Any]]:
        """Every app's invoices, oldest first, each with its ``app_id``; only ``status`` ones if given."""
        with self._lock:
            self._expire_due(time.time())
            return [
                invoice_json(r) | {"app_id": app_id(r.token)}
                for r in self._invoices.values()
                if status is None or r.status == status
            ]

    def invoice(self, invoice_id: int) -> dict[str, Any] | None:
        """One invoice's current object, or ``None``."""
        with self._lock:
            self._expire_due(time.time())
            record = self._invoices.get(invoice_id)
            return None if record is None else invoice_json(record)

    def seed_invoices(self, count: int, params: Params, token: str = DEFAULT_TOKEN) -> dict[str, Any]:
        """Create ``count`` invoices for the app ``token`` from ``createInvoice`` parameters (checked as
        the API checks them; a bad one is a ValueError)."""
        with self._lock:
            if token not in self._tokens:
                raise ValueError("token is not an accepted app token (add it with /_sandbox/tokens first)")
            first = len(self._invoices) + 1
            try:
                template = invoices.create(params, first, token, "", time.time())
            except ApiError as e:
                raise ValueError(f"invoice: {e.name}: {e.detail}") from None
            for invoice_id in range(first, first + count):
                self._store(
                    replace(template, invoice_id=invoice_id, hash=invoice_hash(invoice_id, app_id(token)))
                )
        ids = (first, first + count - 1) if count else (None, None)
        return {"ok": True, "created": count, "first_id": ids[0], "last_id": ids[1]}

    def pay_invoice(
        self,
        invoice_id: int,
        *,
        asset: str | None = None,
        amount: Decimal | None = None,
        comment: str | None = None,
        anonymously: bool = False,
    ) -> dict[str, Any]:
        """Pay an active invoice (see :func:`sandbox.cryptobot.invoices.pay`) and queue its webhook
        update (when a webhook is set); its object afterwards. KeyError: no such invoice."""
        with self._lock:
            now = time.time()
            record = self._record(invoice_id, now)
            invoices.pay(record, now, asset=asset, amount=amount, comment=comment, anonymously=anonymously)
            body = invoice_json(record)
            self._queue_update(record, body)
        return body

    def expire_invoice(self, invoice_id: int) -> dict[str, Any]:
        """Expire an active invoice now; its object afterwards. KeyError: no such invoice."""
        with self._lock:
            record = self._record(invoice_id, time.time())
            invoices.expire(record)
            return invoice_json(record)

    def _record(self, invoice_id: int, now: float) -> InvoiceRecord:
        self._expire_due(now)
        record = self._invoices.get(invoice_id)
        if record is None:
            raise KeyError(f"no invoice {invoice_id}")
        return record

    def _store(self, record: InvoiceRecord) -> None:
        self._invoices[record.invoice_id] = record
        if record.expires_at is not None:
            heapq.heappush(self._expiries, (record.expires_at, record.invoice_id))

    def _expire_due(self, now: float) -> None:
        while self._expiries and self._expiries[0][0] <= now:
            _, invoice_id = heapq.heappop(self._expiries)
            self._invoices[invoice_id].expire_if_due(now)

    # --- logs ---

    def calls(self, since: int = 0, method: str | None = None) -> list[dict[str, Any]]:
        """Every ``/api`` call after ``since`` (a ``seq``), oldest first; only ``method`` ones if given."""
        with self._lock:
            entries = self._calls.since(since)
        return [e for e in entries if method is None or e["method"] == method]

    def deliveries(self, since: int = 0) -> list[dict[str, Any]]:
        """Every webhook delivery attempt after ``since`` (a ``seq``), oldest first."""
        with self._lock:
            return self._deliveries.since(since)

    def deliveries_settled(self) -> bool:
        """True when no delivery is waiting or being sent (all were attempted, retries included)."""
        return self._courier.idle()

    def stats(self) -> dict[str, Any]:
        """``/api`` call counts by status and method, and delivery attempts by status."""
        with self._lock:
            summary = self._calls.stats()
            attempts = [str(e["status"]) for e in self._deliveries.entries]
        summary["deliveries"] = {status: attempts.count(status) for status in sorted(set(attempts))}
        return summary

    # --- the transport-free entry point ---

    def handle(
        self,
        http_method: str,
        method: str,
        params: Params,
        headers: Mapping[str, str] | None = None,
        body_error: str | None = None,
    ) -> CpReply | None:
        """Answer one ``/api/{method}`` call; ``None`` means: close the connection without an answer.
        ``body_error`` says what is wrong with a body that did not parse (400 BODY_INVALID)."""
        head = {name.lower(): value for name, value in (headers or {}).items()}
        call = Call(http_method.upper(), method, params, head, time.time(), body_error)
        generation = self._generation
        if self._faults.down:
            self._note(call, "dropped", None, generation, None)
            return None
        if self._faults.latency_ms:
            self._wake.wait(self._faults.latency_ms / 1000)
        reply, token_known = self._answer(call)
        self._note(call, str(reply.status), reply, generation, token_known)
        return reply

    def _answer(self, call: Call) -> tuple[CpReply, bool | None]:
        """The reply, and whether the token was known (``None``: answered before the token check)."""
        if call.body_error is not None:
            return ApiError(400, "BODY_INVALID", call.body_error).reply(), None
        injected = self._injected_error()
        if injected is not None:
            return injected, None
        token = call.headers.get(TOKEN_HEADER, "")
        with self._lock:
            known, rejected = token in self._tokens, self._faults.token_rejected
        if not known or rejected:
            return unauthorized(token, rejected), known
        answer = METHODS.get(call.method)
        if answer is None:
            return ApiError(405, "METHOD_NOT_FOUND", f"no API method {call.method!r}").reply(), True
        with self._lock:
            self._expire_due(call.arrived)
            try:
                return answer(self, token, call.params), True
            except ApiError as e:
                return e.reply(), True

    def _injected_error(self) -> CpReply | None:
        with self._lock:
            faults = self._faults
            if faults.server_error_count <= 0:
                return None
            faults.server_error_count -= 1
            status = faults.server_error_status
        return server_error(status)

    def _note(
        self, call: Call, status: str, reply: CpReply | None, generation: int, token_known: bool | None
    ) -> None:
        with self._lock:
            if generation != self._generation:
                return  # it arrived before a reset (a test's late call must not show in the next test)
            error, detail = (reply.error_name, reply.detail) if reply is not None else (None, "down fault")
            self._calls.note(call, status, error, detail, token_known)

    # --- the API methods (called under the lock) ---

    def _get_me(self, token: str, params: Params) -> CpReply:
        return ok(
            {"app_id": app_id(token), "name": APP_NAME, "payment_processing_bot_username": BOT_USERNAME}
        )

    def _create_invoice(self, token: str, params: Params) -> CpReply:
        invoice_id = len(self._invoices) + 1
        record = invoices.create(
            params, invoice_id, token, invoice_hash(invoice_id, app_id(token)), time.time()
        )
        self._store(record)
        return ok(invoice_json(record))

    def _get_invoices(self, token: str, params: Params) -> CpReply:
        found = invoices.select(self._invoices, token, params)
        return ok({"items": [invoice_json(r) for r in found]})

    # --- webhook delivery ---

    def _queue_update(self, record: InvoiceRecord, body: dict[str, Any]) -> None:
        """Queue the ``invoice_paid`` update of ``record`` (under the lock): ``duplicate_delivery`` copies."""
        if self._webhook is None:
            return
        update_id, self._next_update_id = self._next_update_id, self._next_update_id + 1
        delay_s = self._faults.delivery_delay_ms / 1000
        for copy in range(1, max(1, self._faults.duplicate_delivery) + 1):
            self._courier.put(Job(update_id, body, record.token, copy, 1, self._generation), delay_s)

    def _deliver(self, job: Job) -> tuple[Job, float] | None:
        """Make one delivery attempt (on the courier's thread); the retry to schedule, if any."""
        with self._lock:
            config = self._webhook
            if config is None or job.generation != self._generation:
                return None
            faults = take_attempt_faults(self._faults)
        entry = attempt(job, config, faults)
        with self._lock:
            if job.generation == self._generation:
                self._deliveries.add(entry)
        if failed(entry) and job.attempt <= config.retries:
            return job.retry(), config.retry_interval_ms / 1000
        return None


METHODS: dict[str, Method] = {
    "getMe": CryptoBotState._get_me,
    "createInvoice": CryptoBotState._create_invoice,
    "getInvoices": CryptoBotState._get_invoices,
}
"""The API methods the sandbox answers (names are case-sensitive); any other is 405 METHOD_NOT_FOUND."""
