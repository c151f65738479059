"""Crypto Pay API client (CryptoBot), per CONTRACTS.md "Crypto Pay API".

Calls ``{CRYPTOBOT_API_URL}/api/{method}`` with the ``Crypto-Pay-API-Token`` header through
:class:`~worker_app.clients.http.JsonHttpClient` (timeouts, ``X-Request-ID`` = trace id, the token
masked in every message) and a per-process circuit breaker (a dead Crypto Pay fails calls at once,
after ``failures`` of them, instead of one timeout each). ``getMe`` is a GET; the other methods POST a
JSON body, amounts as decimal strings (never floats). Replies are ``{"ok": true, "result": ...}``; errors
``{"ok": false, "error": {"code", "name"}}`` with the HTTP status equal to the code, sorted into the error
tree the retry middleware acts on:

* 5xx (``APP_ERROR``, ``INTERNAL_SERVER_ERROR``, a proxy's error page), connection refused or dropped,
  timeouts, a reply that is not the envelope, the breaker open → :class:`CryptoPayUnavailable`
  (transient: retried per the payments policy);
* 401 ``UNAUTHORIZED`` → :class:`CryptoPayAuthError` (permanent, a configuration error: CRYPTOBOT_TOKEN
  is wrong, or belongs to the other network than CRYPTOBOT_API_URL);
* any other 4xx (``AMOUNT_TOO_SMALL``, ``UNSUPPORTED_ASSET``, ``PAID_BTN_URL_REQUIRED``, ...) →
  :class:`CryptoPayRejected` (permanent: this request can never succeed as sent; the message names
  the error).

Amounts are parsed with :class:`~decimal.Decimal` from the decimal strings Crypto Pay sends (numbers are
accepted too); times become timezone-aware UTC datetimes. :func:`signature_valid` checks a webhook's
signature.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from worker_app.clients.breaker import BreakerConfig, CircuitBreaker
from worker_app.clients.http import JsonHttpClient, JsonReply, ServiceUnavailable
from worker_app.errors import ConfigurationError, PermanentError, UpstreamUnavailable, WorkerError
from worker_app.lazy import created_once

SERVICE = "cryptobot"
GET_INVOICES_MAX = 1000
"""Invoices per ``getInvoices`` call (Crypto Pay's limit for ``count``)."""
TOKEN_HEADER = "Crypto-Pay-API-Token"


class CryptoPayError(WorkerError):
    """Base of every error :class:`CryptoPayClient` raises; ``status`` is the HTTP status (``None`` when
    no answer arrived) and ``error_name`` Crypto Pay's own name (``AMOUNT_TOO_SMALL``), when it gave one."""

    def __init__(self, message: str, *, status: int | None = None, error_name: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error_name = error_name


class CryptoPayUnavailable(ServiceUnavailable, CryptoPayError):
    """Crypto Pay did not answer usefully (5xx, connection error, timeout, malformed reply, breaker open).
    Transient: retried."""

    def __init__(self, message: str, *, status: int | None = None, error_name: str | None = None) -> None:
        super().__init__(message, service=SERVICE, status=status)
        self.error_name = error_name


class CryptoPayAuthError(CryptoPayError, PermanentError, ConfigurationError):
    """401 UNAUTHORIZED: CRYPTOBOT_TOKEN is not accepted; every call fails until the config is fixed
    (never retried; ``worker-app`` exits 2 with its message)."""


class CryptoPayRejected(CryptoPayError, PermanentError):
    """Crypto Pay refused this request (a 4xx other than 401): it can never succeed as sent."""


@dataclass(frozen=True, slots=True)
class AppInfo:
    """``getMe``: the app's id and name and the bot that processes its payments."""

    app_id: int
    name: str
    payment_processing_bot_username: str


@dataclass(frozen=True, slots=True)
class Invoice:
    """The fields of a Crypto Pay invoice the payments domain reads (the full object is in ``raw``).

    ``paid_asset`` / ``paid_amount`` are what was actually paid. A paid *crypto* invoice that does not
    carry them was paid in its own asset and amount, so they are filled from ``asset`` / ``amount``.
    """

    invoice_id: int
    status: str
    currency_type: str
    asset: str | None
    fiat: str | None
    amount: Decimal
    paid_asset: str | None
    paid_amount: Decimal | None
    paid_at: datetime | None
    payload: str | None
    created_at: datetime
    expiration_date: datetime | None
    bot_invoice_url: str
    raw: Mapping[str, Any]

    @property
    def paid(self) -> bool:
        """True once the invoice is paid."""
        return self.status == "paid"

    @classmethod
    def from_json(cls, data: Any) -> Invoice:
        """Parse one Invoice object; :class:`CryptoPayUnavailable` when it does not fit the contract."""
        try:
            currency_type, status = str(data["currency_type"]), str(data["status"])
            asset, amount = _str_or_none(data.get("asset")), parse_amount(data["amount"])
            paid_asset = _str_or_none(data.get("paid_asset"))
            paid_amount = _amount_or_none(data.get("paid_amount"))
            if status == "paid" and currency_type == "crypto" and paid_asset is None:
                paid_asset, paid_amount = asset, amount
            return cls(
                invoice_id=_int(data["invoice_id"]), status=status, currency_type=currency_type,
                asset=asset, fiat=_str_or_none(data.get("fiat")), amount=amount, paid_asset=paid_asset,
                paid_amount=paid_amount, paid_at=_time_or_none(data.get("paid_at")),
                payload=_str_or_none(data.get("payload")), created_at=parse_time(data["created_at"]),
                expiration_date=_time_or_none(data.get("expiration_date")),
                bot_invoice_url=str(data["bot_invoice_url"]), raw=data,
            )  # fmt: skip
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise _malformed("invoice", data, e) from e


class CryptoPayClient:
    """Calls the Crypto Pay API for one app; thread-safe, one pooled session per client.

    ``base_url`` is the service root (``https://pay.crypt.bot``, testnet ``https://testnet-pay.crypt.bot``;
    a trailing ``/api`` is dropped). The token is sent in a header only, never logged or put in a message.
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout_s: float = 10.0,
        breaker: CircuitBreaker | None = None,
        pool_maxsize: int = 8,
    ) -> None:
        root = base_url.rstrip("/").removesuffix("/api")
        self._http = JsonHttpClient(
            SERVICE, root, timeout_s=timeout_s, headers={TOKEN_HEADER: token}, secrets=(token,),
            unavailable=_unavailable, pool_maxsize=pool_maxsize,
        )  # fmt: skip
        self.breaker = breaker if breaker is not None else CircuitBreaker(BreakerConfig(), service=SERVICE)

    def __repr__(self) -> str:
        return f"CryptoPayClient(base_url={self._http.base_url!r})"

    def close(self) -> None:
        """Close the pooled connections."""
        self._http.close()

    def get_me(self) -> AppInfo:
        """``getMe``: checks the token; the app's id and name."""
        result = _object(self.call("getMe"), "getMe result")
        try:
            return AppInfo(
                int(result["app_id"]), str(result["name"]), str(result["payment_processing_bot_username"])
            )
        except (KeyError, TypeError, ValueError) as e:
            raise _malformed("getMe result", result, e) from e

    def create_invoice(
        self,
        amount: Decimal | int | str,
        *,
        asset: str | None = None,
        fiat: str | None = None,
        accepted_assets: Sequence[str] | None = None,
        description: str | None = None,
        payload: str | None = None,
        expires_in_s: int | None = None,
        **options: Any,
    ) -> Invoice:
        """``createInvoice`` for ``amount`` of ``asset`` (a crypto invoice) or of ``fiat`` (a fiat invoice,
        payable in ``accepted_assets``, default all). ``payload`` (≤ 4 KB) comes back in the invoice and
        its webhook: put the payment id there. ``options``: ``hidden_message``, ``paid_btn_name`` with
        ``paid_btn_url``, ``allow_comments``, ``allow_anonymous``, ``swap_to``. ValueError when the
        arguments cannot make an invoice (checked before any call). Not idempotent: after a timeout the
        invoice may exist anyway, and a retry makes a second one (both carry the same ``payload``)."""
        if (asset is None) == (fiat is None):
            raise ValueError("give exactly one of asset (a crypto invoice) and fiat (a fiat invoice)")
        if accepted_assets is not None and fiat is None:
            raise ValueError("accepted_assets is only for fiat invoices")
        params: dict[str, Any] = {
            "currency_type": "fiat" if fiat else "crypto", "asset": asset, "fiat": fiat,
            "amount": _amount_text(amount), "description": description, "payload": payload,
            "expires_in": expires_in_s, **options,
            "accepted_assets": None if accepted_assets is None else ",".join(accepted_assets),
        }  # fmt: skip
        return Invoice.from_json(
            self.call("createInvoice", {k: v for k, v in params.items() if v is not None})
        )

    def get_invoices(self, invoice_ids: Iterable[int]) -> list[Invoice]:
        """The invoices with these ids (those Crypto Pay has; unknown ids are simply absent), asked in
        ``getInvoices`` calls of at most 1,000 ids, each with ``count`` = its number of ids (the default
        count, 100, would silently cut a bigger batch)."""
        found: list[Invoice] = []
        for batch in _batches(list(dict.fromkeys(int(i) for i in invoice_ids)), GET_INVOICES_MAX):
            params = {"invoice_ids": ",".join(map(str, batch)), "count": len(batch)}
            found.extend(self._items(self.call("getInvoices", params)))
        return found

    def invoices(self, *, status: str | None = None, offset: int = 0, count: int = 100) -> list[Invoice]:
        """One page of the app's invoices (``status`` ``active`` or ``paid``, or all), newest first."""
        if not 1 <= count <= GET_INVOICES_MAX:
            raise ValueError(f"count must be from 1 to {GET_INVOICES_MAX}")
        params: dict[str, Any] = {"offset": offset, "count": count} | ({"status": status} if status else {})
        return self._items(self.call("getInvoices", params))

    def _items(self, result: Any) -> list[Invoice]:
        items = _object(result, "getInvoices result").get("items")
        if not isinstance(items, list):
            raise _malformed("getInvoices result (no items list)", result)
        return [Invoice.from_json(item) for item in items]

    def call(self, method: str, params: Mapping[str, Any] | None = None) -> Any:
        """One API call (GET without parameters, else a POST of them as JSON): its ``result``; raises a
        :class:`CryptoPayError` otherwise."""
        if not self.breaker.allow():
            raise CryptoPayUnavailable(
                f"cryptobot {method}: circuit breaker open (Crypto Pay failed repeatedly); "
                f"next try in {self.breaker.blocked_for():.1f} s"
            )
        http_method, body = ("POST", dict(params)) if params else ("GET", None)
        try:
            reply = self._http.request(http_method, f"/api/{method}", json=body)
        except UpstreamUnavailable as e:
            self.breaker.record_failure(str(e))
            _count(method, getattr(e, "status", None) or "error")
            raise
        except BaseException:
            self.breaker.release_probe()
            raise
        self.breaker.record_success()
        _count(method, reply.status)
        return _result(method, reply)


def signature_valid(token: str, raw_body: bytes, signature: str | None) -> bool:
    """Whether ``signature`` (a webhook's ``crypto-pay-api-signature`` header) signs ``raw_body`` for the
    app ``token``: lowercase hex HMAC-SHA256 of the raw bytes keyed with the raw SHA-256 digest of the
    token, compared in constant time. Check it before parsing; it does not cover staleness
    (``request_date``) or duplicates (deduplicate by ``payload.invoice_id``)."""
    if not signature:
        return False
    key = hashlib.sha256(token.encode("utf-8")).digest()
    expected = hmac.new(key, raw_body, hashlib.sha256).hexdigest().encode("ascii")
    # bytes, not str: compare_digest refuses a str with non-ASCII characters (a forged header may have them)
    return hmac.compare_digest(expected, signature.encode("utf-8", "replace"))


def parse_amount(value: Any) -> Decimal:
    """An amount or rate as Crypto Pay sends it — a decimal string, or a number — as a Decimal."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"an amount must be a decimal string or a number, not {type(value).__name__}")
    try:
        amount = Decimal(value if not isinstance(value, float) else repr(value))
    except InvalidOperation:
        raise ValueError(f"{str(value)[:40]!r} is not a decimal amount") from None
    if not amount.is_finite():
        raise ValueError(f"{str(value)[:40]!r} is not a finite amount")
    return amount


def parse_time(value: Any) -> datetime:
    """A Crypto Pay time (``2025-08-01T07:00:30.465Z``) as an aware UTC datetime."""
    parsed = datetime.fromisoformat(str(value))
    if parsed.tzinfo is None:
        raise ValueError(f"{str(value)[:40]!r} has no time zone")
    return parsed.astimezone(UTC)


def _result(method: str, reply: JsonReply) -> Any:
    body = reply.body
    if not isinstance(body, dict) or not isinstance(body.get("ok"), bool):
        raise _malformed(f"{method} reply (HTTP {reply.status}, not the ok/result envelope)", body)
    if body["ok"] and reply.status < 300:
        if "result" not in body:
            raise _malformed(f"{method} reply (no result)", body)
        return body["result"]
    raise _classify(method, reply.status, body.get("error"))


def _classify(method: str, status: int, error: Any) -> CryptoPayError:
    """The error for an ``ok: false`` reply (Crypto Pay's code is also the HTTP status)."""
    detail = error if isinstance(error, dict) else {}
    name = str(detail.get("name") or f"HTTP {status}")[:80]
    given = detail.get("code")
    code = given if isinstance(given, int) and not isinstance(given, bool) else status
    where = f"cryptobot {method}: {code} {name}"
    if code == 401 or status == 401:
        return CryptoPayAuthError(
            f"{where} — CRYPTOBOT_TOKEN is not accepted by Crypto Pay (a mainnet token does not work on "
            "testnet nor the other way round: check CRYPTOBOT_API_URL too)",
            status=status,
            error_name=name,
        )
    if code >= 500 or status in (408, 429):
        return CryptoPayUnavailable(where, status=status, error_name=name)
    return CryptoPayRejected(where, status=status, error_name=name)


def _unavailable(message: str, status: int | None) -> UpstreamUnavailable:
    return CryptoPayUnavailable(message, status=status)


def _malformed(what: str, data: Any, error: Exception | None = None) -> CryptoPayUnavailable:
    """The error for a reply that does not fit the contract: it names the invoice id and the fields,
    never their values (a payload is ours, but descriptions and comments are the payer's)."""
    cause = f" ({type(error).__name__}: {error})" if isinstance(error, KeyError | ValueError) else ""
    if isinstance(data, dict):
        shape = f"invoice_id {data.get('invoice_id')!r}, fields {sorted(map(str, data))[:40]}"
    else:
        shape = f"a {type(data).__name__}"
    return CryptoPayUnavailable(f"cryptobot: malformed {what}{cause[:200]}: {shape}")


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _malformed(what, value)
    return value


def _amount_text(amount: Decimal | int | str) -> str:
    """The amount as the decimal string sent (floats are refused: they cannot hold a price exactly)."""
    if isinstance(amount, bool | float) or not isinstance(amount, Decimal | int | str):
        raise TypeError(f"amount must be a Decimal, an int or a decimal string, not {type(amount).__name__}")
    value = parse_amount(str(amount))
    if value <= 0:
        raise ValueError(f"amount must be above 0, not {value}")
    return format(value, "f")


def _batches(ids: Sequence[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(ids), size):
        yield list(ids[start : start + size])


def _int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not an integer")
    return int(value)


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def _amount_or_none(value: Any) -> Decimal | None:
    return None if value is None else parse_amount(value)


def _time_or_none(value: Any) -> datetime | None:
    return None if value is None else parse_time(value)


@created_once
def _requests_total() -> Any:
    import prometheus_client as prom

    return prom.Counter(
        "cybervpn_cryptobot_requests", "Crypto Pay API calls by method and HTTP status (or error).",
        ("method", "status"), registry=None,
    )  # fmt: skip


def _count(method: str, status: int | str) -> None:
    _requests_total().labels(method, str(status)).inc()
