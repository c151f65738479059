"""The fake Crypto Pay's ``/_sandbox/`` admin endpoints: no auth, unaffected by the faults; JSON in, JSON
out; a bad request gets 400 ``{"ok": false, "error": "..."}``, an unknown invoice 404 (helpers shared with
the other sandboxes in :mod:`sandbox.server`).

* ``POST /_sandbox/reset`` — back to the initial state.
* ``POST /_sandbox/tokens`` ``{"token": "..."}`` — accept another app token (another app).
* ``GET /_sandbox/invoices[?status=]`` — every invoice; ``POST`` ``{"count": N, "invoice": {createInvoice
  parameters}, "token"?: "..."}`` creates N at once; ``GET /_sandbox/invoices/{id}`` — one.
* ``POST /_sandbox/invoices/{id}/pay`` ``{"paid_asset"?, "paid_amount"?, "comment"?, "paid_anonymously"?}``
  and ``POST /_sandbox/invoices/{id}/expire``.
* ``POST /_sandbox/webhook`` ``{"url": "..." | null, "token"?, "retries"?, "retry_interval_ms"?,
  "timeout_s"?}``; ``GET`` reads it.
* ``POST /_sandbox/faults`` (``GET`` reads) — ``server_error``, ``latency_ms``, ``down``,
  ``token_rejected``, ``duplicate_delivery``, ``delivery_delay_ms``, ``delivery_lost``,
  ``wrong_signature``, ``stale_request_date``; null puts one back to its default.
* ``GET /_sandbox/deliveries[?since=]``, ``GET /_sandbox/calls[?since=&method=]``, ``GET /_sandbox/stats``.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from flask import Flask, Response, request

from sandbox.cryptobot import params
from sandbox.cryptobot.format import DEFAULT_TOKEN, ApiError
from sandbox.cryptobot.invoices import STATUSES
from sandbox.cryptobot.state import CryptoBotState
from sandbox.cryptobot.webhook import WebhookConfig
from sandbox.server import _admin, _admin_body, _count, _json, _latency, _server_error, faults_endpoint

_PAY_FIELDS = ("paid_asset", "paid_amount", "comment", "paid_anonymously")
_WEBHOOK_FIELDS = ("url", "token", "retries", "retry_interval_ms", "timeout_s")


def add_admin_routes(app: Flask, state: CryptoBotState) -> None:
    """Register the ``/_sandbox/`` endpoints on ``app``, acting on ``state``."""

    def route(rule: str, action: Callable[..., Any], methods: tuple[str, ...] = ("POST",)) -> None:
        app.add_url_rule(
            f"/_sandbox/{rule}",
            f"sandbox_{rule}",
            lambda **kw: _answer(lambda: action(**kw)),
            methods=methods,
        )

    route("reset", state.reset)
    route("tokens", lambda: state.add_token(_token(_admin_body())))
    route("invoices", lambda: _invoices(state), methods=("GET", "POST"))
    route("invoices/<int:invoice_id>", lambda invoice_id: _invoice(state, invoice_id), methods=("GET",))
    route("invoices/<int:invoice_id>/pay", lambda invoice_id: _pay(state, invoice_id))
    route("invoices/<int:invoice_id>/expire", state.expire_invoice)
    route("webhook", lambda: _webhook(state), methods=("GET", "POST"))
    route("faults", lambda: faults_endpoint(state, _FAULT_PARSERS), methods=("GET", "POST"))
    route("deliveries", lambda: state.deliveries(_since()), methods=("GET",))
    route("calls", lambda: state.calls(_since(), request.args.get("method")), methods=("GET",))
    route("stats", state.stats, methods=("GET",))


def _answer(action: Callable[[], Any]) -> Response:
    """:func:`sandbox.server._admin`, plus 404 for an unknown invoice (a KeyError)."""
    try:
        return _admin(action)
    except KeyError as e:
        return _json({"ok": False, "error": str(e.args[0])}, 404)


def _token(body: dict[str, Any]) -> str:
    token = body.get("token")
    if not isinstance(token, str) or not token.strip() or any(c.isspace() for c in token):
        raise ValueError("token must be a non-empty string without spaces")
    return token


def _invoices(state: CryptoBotState) -> Any:
    if request.method == "GET":
        status = request.args.get("status")
        if status is not None and status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}")
        return state.invoices(status)
    body = _admin_body()
    unknown = set(body) - {"count", "invoice", "token"}
    if unknown or not isinstance(body.get("invoice"), dict):
        raise ValueError('give {"count": N, "invoice": {createInvoice parameters}, "token"?: "..."}')
    count = _count(body, "count")
    if not 1 <= count <= 100_000:
        raise ValueError("count must be from 1 to 100000")
    token = DEFAULT_TOKEN if body.get("token") is None else _token(body)
    return state.seed_invoices(count, body["invoice"], token)


def _invoice(state: CryptoBotState, invoice_id: int) -> dict[str, Any]:
    found = state.invoice(invoice_id)
    if found is None:
        raise KeyError(f"no invoice {invoice_id}")
    return found


def _pay(state: CryptoBotState, invoice_id: int) -> dict[str, Any]:
    body = _admin_body() if request.get_data() else {}
    unknown = sorted(set(body) - set(_PAY_FIELDS))
    if unknown:
        raise ValueError(f"unknown field {unknown[0]!r}; known: {', '.join(_PAY_FIELDS)}")
    asset = _api_checked(
        lambda: None if body.get("paid_asset") is None else params.asset(body["paid_asset"], "paid_asset")
    )
    amount: Decimal | None = _api_checked(
        lambda: None if body.get("paid_amount") is None else params.amount(body["paid_amount"], "paid_amount")
    )
    comment = body.get("comment")
    if comment is not None and (not isinstance(comment, str) or len(comment) > 1024):
        raise ValueError("comment must be a string of at most 1024 characters")
    anonymously = body.get("paid_anonymously", False)
    if not isinstance(anonymously, bool):
        raise ValueError("paid_anonymously must be true or false")
    return state.pay_invoice(invoice_id, asset=asset, amount=amount, comment=comment, anonymously=anonymously)


def _api_checked(check: Callable[[], Any]) -> Any:
    """Run an API parameter check, its error turned into the admin API's ValueError."""
    try:
        return check()
    except ApiError as e:
        raise ValueError(e.detail) from None


def _webhook(state: CryptoBotState) -> dict[str, Any]:
    if request.method == "POST":
        state.set_webhook(_webhook_config(_admin_body()))
    return {"ok": True, "webhook": state.webhook()}


def _webhook_config(body: dict[str, Any]) -> WebhookConfig | None:
    unknown = sorted(set(body) - set(_WEBHOOK_FIELDS))
    if unknown:
        raise ValueError(f"unknown field {unknown[0]!r}; known: {', '.join(_WEBHOOK_FIELDS)}")
    url, token, timeout_s = body.get("url"), body.get("token"), body.get("timeout_s", 5.0)
    if url is None:
        return None
    if (
        not isinstance(url, str)
        or not url.startswith(("http://", "https://"))
        or any(c.isspace() for c in url)
    ):
        raise ValueError("url must be an http:// or https:// URL (or null: no webhook)")
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float) or not 0 < timeout_s <= 60:
        raise ValueError("timeout_s must be a number of seconds above 0, at most 60")
    retries = _count(body, "retries")
    if retries > 20:
        raise ValueError("retries must be at most 20")
    return WebhookConfig(
        url,
        None if token is None else _token(body),
        retries=retries,
        retry_interval_ms=_count(body, "retry_interval_ms", 1000),
        timeout_s=float(timeout_s),
    )


def _since() -> int:
    since = request.args.get("since", "0")
    if not since.isdigit():
        raise ValueError("since must be a non-negative integer (a seq)")
    return int(since)


def _flag(name: str) -> Callable[[Any], dict[str, Any]]:
    def parse(value: Any) -> dict[str, Any]:
        if value is not None and not isinstance(value, bool):
            raise ValueError(f"{name} takes true or false (or null)")
        return {name: bool(value)}

    return parse


def _number(name: str, default: int = 0, low: int = 0) -> Callable[[Any], dict[str, Any]]:
    def parse(value: Any) -> dict[str, Any]:
        number = _count({name: value}, name, default)
        if number < low:
            raise ValueError(f"{name} must be an integer of at least {low} (or null for {default})")
        return {name: number}

    return parse


def _stale_request_date(value: Any) -> dict[str, Any]:
    if value is not None and not isinstance(value, dict):
        raise ValueError('stale_request_date takes {"count": N, "age_s": S} (or null)')
    spec = value or {}
    unknown = set(spec) - {"count", "age_s"}
    if unknown:
        raise ValueError('stale_request_date takes {"count": N, "age_s": S} (or null)')
    return {
        "stale_request_date_count": _count(spec, "count"),
        "stale_request_date_age_s": _count(spec, "age_s", 3600),
    }


_FAULT_PARSERS: dict[str, Callable[[Any], Any]] = {
    "server_error": _server_error,
    "latency_ms": _latency,
    "down": _flag("down"),
    "token_rejected": _flag("token_rejected"),
    "duplicate_delivery": _number("duplicate_delivery", default=1, low=1),
    "delivery_delay_ms": _number("delivery_delay_ms"),
    "delivery_lost": _number("delivery_lost"),
    "wrong_signature": _number("wrong_signature"),
    "stale_request_date": _stale_request_date,
}
