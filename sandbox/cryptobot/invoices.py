"""Invoices of the fake Crypto Pay: ``createInvoice``'s checks, the Invoice object on the wire,
``getInvoices``' filters, and what paying or expiring an invoice changes.

An invoice belongs to the app (token) that created it; ``getInvoices`` only sees that app's invoices.
Amounts are kept as :class:`~decimal.Decimal` and sent as decimal strings; times are unix seconds,
sent as ``2025-08-01T07:00:30.465Z``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sandbox.cryptobot import params as p
from sandbox.cryptobot.format import (
    ASSET_USD,
    BOT_USERNAME,
    FEE_RATE,
    FIAT_USD,
    MAX_DESCRIPTION,
    MAX_EXPIRES_IN_S,
    MAX_HIDDEN_MESSAGE,
    MAX_PAYLOAD_BYTES,
    MAX_USD,
    MIN_USD,
    PAID_BUTTONS,
    SWAP_ASSETS,
    bad,
    decimal_text,
    iso_ms,
)

STATUSES = ("active", "paid", "expired")
_EIGHT_PLACES = Decimal("0.00000001")


@dataclass(frozen=True)
class Payment:
    """How an invoice was paid: asset and amount, rates, fee, comment, when."""

    asset: str
    amount: Decimal
    usd_rate: Decimal
    fiat_rate: Decimal | None
    fee_amount: Decimal
    anonymously: bool
    comment: str | None
    at: float


@dataclass
class InvoiceRecord:
    """One invoice as the sandbox keeps it; :func:`invoice_json` is its wire form."""

    invoice_id: int
    token: str
    hash: str
    currency_type: str
    asset: str | None
    fiat: str | None
    accepted_assets: list[str] | None
    amount: Decimal
    texts: dict[str, str]
    """description, hidden_message, payload, paid_btn_name, paid_btn_url, swap_to — those given."""
    allow_comments: bool
    allow_anonymous: bool
    created_at: float
    expires_at: float | None
    status: str = "active"
    payment: Payment | None = None

    def expire_if_due(self, now: float) -> None:
        """An active invoice past its ``expiration_date`` is expired (the real service does it itself)."""
        if self.status == "active" and self.expires_at is not None and self.expires_at <= now:
            self.status = "expired"


def create(params: p.Params, invoice_id: int, token: str, invoice_hash: str, now: float) -> InvoiceRecord:
    """``createInvoice``: a new active invoice, or an :class:`~sandbox.cryptobot.format.ApiError`."""
    currency_type = p.choice(params, "currency_type", ("crypto", "fiat"), "crypto")
    asset, fiat, accepted = _currency(params, currency_type == "fiat")
    amount = p.amount(params.get("amount"))
    usd = amount * (FIAT_USD[fiat] if fiat else ASSET_USD[str(asset)])
    if usd < MIN_USD:
        raise bad("AMOUNT_TOO_SMALL", f"amount is worth {usd:.4f} USD; at least {MIN_USD} USD")
    if usd > MAX_USD:
        raise bad("AMOUNT_TOO_BIG", f"amount is worth {usd:.2f} USD; at most {MAX_USD} USD")
    expires_in = p.integer(params, "expires_in", default=None, low=1, high=MAX_EXPIRES_IN_S)
    return InvoiceRecord(
        invoice_id, token, invoice_hash, str(currency_type), asset, fiat, accepted, amount, _texts(params),
        allow_comments=p.boolean(params, "allow_comments", True),
        allow_anonymous=p.boolean(params, "allow_anonymous", True),
        created_at=now, expires_at=None if expires_in is None else now + expires_in,
    )  # fmt: skip


def _currency(params: p.Params, fiat_type: bool) -> tuple[str | None, str | None, list[str] | None]:
    """(asset, fiat, accepted_assets) for a crypto or a fiat invoice."""
    accepted = p.asset_list(params)
    if not fiat_type:
        if params.get("asset") in (None, ""):
            raise bad("ASSET_REQUIRED", "asset is required when currency_type is crypto")
        if accepted is not None:
            raise bad("ACCEPTED_ASSETS_INVALID", "accepted_assets is only for currency_type fiat")
        return p.asset(params.get("asset")), None, None
    fiat = p.text(params, "fiat")
    if not fiat:
        raise bad("FIAT_REQUIRED", "fiat is required when currency_type is fiat")
    if fiat not in FIAT_USD:
        raise bad("FIAT_INVALID", f"fiat {fiat[:40]!r} is not one of {', '.join(FIAT_USD)}")
    return None, fiat, accepted


def _texts(params: p.Params) -> dict[str, str]:
    values = {
        "description": p.text(params, "description", max_chars=MAX_DESCRIPTION),
        "hidden_message": p.text(params, "hidden_message", max_chars=MAX_HIDDEN_MESSAGE),
        "payload": p.text(params, "payload", max_bytes=MAX_PAYLOAD_BYTES),
        "paid_btn_name": p.choice(params, "paid_btn_name", PAID_BUTTONS),
        "paid_btn_url": p.text(params, "paid_btn_url", max_chars=2048),
        "swap_to": p.choice(params, "swap_to", SWAP_ASSETS),
    }
    if values["paid_btn_name"] and not values["paid_btn_url"]:
        raise bad("PAID_BTN_URL_REQUIRED", "paid_btn_name needs paid_btn_url")
    url = values["paid_btn_url"]
    if url and not url.startswith(("https://", "http://")):
        raise bad("PAID_BTN_URL_INVALID", "paid_btn_url must start with https:// or http://")
    return {name: value for name, value in values.items() if value is not None}


def invoice_json(record: InvoiceRecord) -> dict[str, Any]:
    """The Invoice object: every field real clients require, the optional ones that apply."""
    h = record.hash
    body: dict[str, Any] = {"invoice_id": record.invoice_id, "hash": h, "currency_type": record.currency_type}
    if record.fiat:
        body |= {"fiat": record.fiat, "accepted_assets": record.accepted_assets or list(ASSET_USD)}
    else:
        body["asset"] = record.asset
    body |= {
        "amount": decimal_text(record.amount),
        "pay_url": f"https://t.me/{BOT_USERNAME}?start={h}",
        "bot_invoice_url": f"https://t.me/{BOT_USERNAME}?start={h}",
        "mini_app_invoice_url": f"https://t.me/{BOT_USERNAME}/app?startapp=invoice-{h}&mode=compact",
        "web_app_invoice_url": f"https://app.send.tg/invoices/{h}",
        "status": record.status,
        "created_at": iso_ms(record.created_at),
        "allow_comments": record.allow_comments,
        "allow_anonymous": record.allow_anonymous,
    }
    if record.expires_at is not None:
        body["expiration_date"] = iso_ms(record.expires_at)
    if record.payment is not None:
        body |= _payment_json(record.payment)
    return body | record.texts


def _payment_json(payment: Payment) -> dict[str, Any]:
    body: dict[str, Any] = {"paid_asset": payment.asset, "paid_amount": decimal_text(payment.amount)}
    if payment.fiat_rate is not None:
        body["paid_fiat_rate"] = decimal_text(payment.fiat_rate)
    body |= {
        "paid_usd_rate": decimal_text(payment.usd_rate),
        "fee_asset": payment.asset,
        "fee_amount": decimal_text(payment.fee_amount),
        "fee_in_usd": decimal_text((payment.fee_amount * payment.usd_rate).quantize(_EIGHT_PLACES)),
        "paid_anonymously": payment.anonymously,
        "paid_at": iso_ms(payment.at),
    }
    if payment.comment is not None:
        body["comment"] = payment.comment
    return body


def pay(
    record: InvoiceRecord,
    now: float,
    *,
    asset: str | None = None,
    amount: Decimal | None = None,
    comment: str | None = None,
    anonymously: bool = False,
) -> None:
    """Mark ``record`` paid: in ``asset`` (default: the invoice's, or USDT / the first accepted asset of
    a fiat invoice) and ``amount`` (default: the invoice's value in that asset), 3 % fee. ValueError
    when it is not active."""
    if record.status != "active":
        raise ValueError(
            f"invoice {record.invoice_id} is {record.status}; only an active invoice can be paid"
        )
    paid_asset = asset or _default_asset(record)
    usd_rate = ASSET_USD[paid_asset]
    fiat_rate = None if record.fiat is None else _rate(usd_rate / FIAT_USD[record.fiat])
    if amount is None:
        amount = record.amount if paid_asset == record.asset else _rate(_usd_value(record) / usd_rate)
    fee = (amount * FEE_RATE).quantize(_EIGHT_PLACES, ROUND_HALF_UP)
    record.status = "paid"
    record.payment = Payment(paid_asset, amount, usd_rate, fiat_rate, fee, anonymously, comment, now)


def expire(record: InvoiceRecord) -> None:
    """Expire an active invoice now (an expired one stays so); ValueError for a paid one."""
    if record.status == "paid":
        raise ValueError(f"invoice {record.invoice_id} is paid; a paid invoice cannot expire")
    record.status = "expired"


def _default_asset(record: InvoiceRecord) -> str:
    if record.asset is not None:
        return record.asset
    accepted = record.accepted_assets or list(ASSET_USD)
    return "USDT" if "USDT" in accepted else accepted[0]


def _usd_value(record: InvoiceRecord) -> Decimal:
    return record.amount * (FIAT_USD[record.fiat] if record.fiat else ASSET_USD[str(record.asset)])


def _rate(value: Decimal) -> Decimal:
    return value.quantize(_EIGHT_PLACES, ROUND_HALF_UP)


def select(records: dict[int, InvoiceRecord], token: str, params: p.Params) -> list[InvoiceRecord]:
    """``getInvoices``: the app's invoices matching ``invoice_ids``, ``status`` (active | paid), ``asset``
    and ``fiat``, newest first, then ``offset`` and ``count`` (1–1000, default 100) applied."""
    ids = p.id_list(params)
    status = p.choice(params, "status", ("active", "paid"))
    asset = None if params.get("asset") in (None, "") else p.asset(params.get("asset"))
    fiat = p.text(params, "fiat") or None
    if fiat is not None and fiat not in FIAT_USD:
        raise bad("FIAT_INVALID", f"fiat {fiat[:40]!r} is not one of {', '.join(FIAT_USD)}")
    offset = p.integer(params, "offset", default=0, low=0, high=10**9) or 0
    count = p.integer(params, "count", default=100, low=1, high=1000) or 100
    candidates: Iterable[InvoiceRecord] = (
        reversed(records.values())
        if ids is None
        else (records[i] for i in sorted(set(ids), reverse=True) if i in records)
    )
    found = [
        r
        for r in candidates
        if r.token == token
        and (status is None or r.status == status)
        and (asset is None or r.asset == asset)
        and (fiat is None or r.fiat == fiat)
    ]
    return found[offset : offset + count]
