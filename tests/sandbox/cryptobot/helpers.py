"""Shared by the fake Crypto Pay's contract tests: the error-envelope assertion, the wire formats of
times and amounts, and the fields every Invoice carries."""

from __future__ import annotations

import re

import requests

ISO_MS = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
DECIMAL = re.compile(r"\d+(\.\d+)?")
REQUIRED_INVOICE_FIELDS = {
    "invoice_id", "hash", "status", "currency_type", "amount", "bot_invoice_url", "mini_app_invoice_url",
    "web_app_invoice_url", "created_at", "allow_comments", "allow_anonymous",
}  # fmt: skip


def assert_error(reply: requests.Response, code: int, name: str) -> None:
    """The reply is exactly Crypto Pay's error envelope, with the HTTP status equal to the code."""
    assert reply.headers["Content-Type"].startswith("application/json"), reply.headers
    assert (reply.status_code, reply.json()) == (code, {"ok": False, "error": {"code": code, "name": name}})
