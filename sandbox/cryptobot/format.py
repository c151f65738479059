"""Crypto Pay wire format for the sandbox (CONTRACTS.md, "Crypto Pay API"): constants, the reply and
error envelopes, amounts as decimal strings, times as ``2025-08-01T07:00:30.465Z``, and the webhook
body's bytes and signature.

Every error is ``{"ok": false, "error": {"code": N, "name": "UPPER_SNAKE"}}`` with the HTTP status equal
to ``code``. The real API says nothing more; the sandbox keeps a human explanation of each error
(``detail``) in its call log instead of on the wire.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import zlib
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

DEFAULT_TOKEN = "sandbox-cryptobot-token"
"""The app token the sandbox accepts from the start: the worker's default CRYPTOBOT_TOKEN."""
APP_NAME = "Sandbox App"
BOT_USERNAME = "CryptoBot"
"""``payment_processing_bot_username`` (mainnet's bot; testnet's is CryptoTestnetBot)."""

ASSET_USD: dict[str, Decimal] = {
    name: Decimal(rate)
    for name, rate in (
        ("USDT", "1"), ("TON", "3.2"), ("BTC", "65000"), ("ETH", "3200"), ("LTC", "80"), ("BNB", "600"),
        ("TRX", "0.25"), ("USDC", "1"), ("SOL", "150"), ("DOGE", "0.15"), ("NOT", "0.005"),
        ("JET", "0.01"),
    )
}  # fmt: skip
"""The assets invoices may be in, with the fixed USD price the sandbox uses for limits and payments."""
FIAT_USD: dict[str, Decimal] = {
    name: Decimal(rate)
    for name, rate in (
        ("USD", "1"), ("EUR", "1.08"), ("RUB", "0.011"), ("BYN", "0.31"), ("UAH", "0.024"), ("GBP", "1.27"),
        ("CNY", "0.14"), ("KZT", "0.002"), ("UZS", "0.00008"), ("GEL", "0.37"), ("TRY", "0.03"),
        ("AMD", "0.0026"), ("THB", "0.028"), ("INR", "0.012"), ("BRL", "0.18"), ("IDR", "0.000062"),
        ("AZN", "0.59"), ("AED", "0.27"), ("PLN", "0.25"), ("ILS", "0.27"),
    )
}  # fmt: skip
"""The fiat currencies of fiat invoices, with the fixed USD value of one unit."""
SWAP_ASSETS = ("USDT", "TON", "TRX", "ETH", "SOL", "BTC", "LTC")
PAID_BUTTONS = ("viewItem", "openChannel", "openBot", "callback")
MIN_USD, MAX_USD = Decimal("0.01"), Decimal("25000")
"""An invoice worth less (more) than this in USD is AMOUNT_TOO_SMALL (AMOUNT_TOO_BIG)."""
FEE_RATE = Decimal("0.03")
MAX_EXPIRES_IN_S = 2_678_400
MAX_DESCRIPTION, MAX_HIDDEN_MESSAGE, MAX_PAYLOAD_BYTES = 1024, 2048, 4096
SIGNATURE_HEADER = "crypto-pay-api-signature"
"""Sent lowercase: one client library looks only for this spelling or ``Crypto-Pay-Api-Signature``."""
WEBHOOK_CONTENT_TYPE = "application/json;charset=utf-8"
REPLY_CONTENT_TYPE = "application/json; charset=utf-8"


@dataclass(frozen=True)
class CpReply:
    """One API answer: HTTP status, JSON body and, for an error, why (kept in the call log only).
    ``plain`` marks a plain-text body (an injected 5xx other than 500, as a proxy answers)."""

    status: int
    body: Any
    detail: str | None = None
    plain: bool = False

    @property
    def error_name(self) -> str | None:
        """The error's ``name`` (``UNAUTHORIZED``), or ``None`` for a success or a plain-text body."""
        if isinstance(self.body, dict) and isinstance(self.body.get("error"), dict):
            return str(self.body["error"]["name"])
        return None


class ApiError(Exception):
    """An API error: ``code`` (also the HTTP status), ``name`` and the ``detail`` for the call log."""

    def __init__(self, code: int, name: str, detail: str) -> None:
        super().__init__(f"{code} {name}: {detail}")
        self.code, self.name, self.detail = code, name, detail

    def reply(self) -> CpReply:
        """The error envelope with the HTTP status equal to the code."""
        return CpReply(self.code, {"ok": False, "error": {"code": self.code, "name": self.name}}, self.detail)


def bad(name: str, detail: str) -> ApiError:
    """A 400 error named ``name``."""
    return ApiError(400, name, detail)


def ok(result: Any) -> CpReply:
    """``{"ok": true, "result": ...}``."""
    return CpReply(200, {"ok": True, "result": result})


def compact_json(value: Any) -> bytes:
    """Compact JSON, non-ASCII unescaped, UTF-8: the bytes Crypto Pay sends (and signs)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def sign(token: str, body: bytes) -> str:
    """The webhook signature: lowercase hex HMAC-SHA256 of ``body`` keyed with SHA-256(token) (raw)."""
    key = hashlib.sha256(token.encode("utf-8")).digest()
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def iso_ms(seconds: float) -> str:
    """``2025-08-01T07:00:30.465Z`` for unix seconds."""
    whole, millis = divmod(round(seconds * 1000), 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{millis:03d}Z"


def decimal_text(value: Decimal) -> str:
    """A decimal string without exponent or trailing zeros: ``125.5``, ``10``, ``0.00001``."""
    return format(value.normalize(), "f")


def app_id(token: str) -> int:
    """The app id ``getMe`` reports: the token's numeric prefix (``12345:AA...``), else a stable number."""
    prefix = token.split(":", 1)[0]
    return (
        int(prefix) if prefix.isdigit() and len(prefix) < 12 else 10_000 + zlib.crc32(token.encode()) % 90_000
    )


def invoice_hash(invoice_id: int, app: int) -> str:
    """A 12-character invoice hash like the real ones (``IVDoTcNBYEfk``), stable per id and app."""
    digest = hashlib.sha256(f"{app}:{invoice_id}".encode()).hexdigest()
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    return "IV" + "".join(letters[int(digest[i : i + 2], 16) % 52] for i in range(0, 20, 2))
