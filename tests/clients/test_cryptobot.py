"""The Crypto Pay client over HTTP against the sandbox Crypto Pay (CONTRACTS.md, Crypto Pay API):
invoices, batching, Decimal amounts, error classification, the breaker, and the token kept secret."""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from tests.fixtures.cryptobot import TOKEN, CryptoPay, Receiver
from worker_app.clients.breaker import BreakerConfig, CircuitBreaker
from worker_app.clients.cryptobot import (
    CryptoPayAuthError,
    CryptoPayClient,
    CryptoPayRejected,
    CryptoPayUnavailable,
    Invoice,
    parse_amount,
    signature_valid,
)
from worker_app.clients.http import ServiceUnavailable
from worker_app.config import load_settings
from worker_app.errors import ConfigurationError, PermanentError, UpstreamUnavailable
from worker_app.runtime import Runtime

INVOICE = {
    "invoice_id": 7, "hash": "IVabc", "status": "paid", "currency_type": "crypto", "asset": "TON",
    "amount": "2.5", "bot_invoice_url": "https://t.me/CryptoBot?start=IVabc",
    "mini_app_invoice_url": "https://t.me/CryptoBot/app?startapp=invoice-IVabc",
    "web_app_invoice_url": "https://app.send.tg/invoices/IVabc", "created_at": "2025-08-01T07:00:30.465Z",
    "allow_comments": True, "allow_anonymous": True, "paid_at": "2025-08-01T07:05:00.000+03:00",
}  # fmt: skip
"""A paid crypto invoice as a Crypto Pay client might see it: no paid_asset/paid_amount, an offset time."""


def test_get_me_names_the_app(cryptobot: CryptoPayClient) -> None:
    info = cryptobot.get_me()

    assert info.name == "Sandbox App" and info.payment_processing_bot_username == "CryptoBot"
    assert isinstance(info.app_id, int)


def test_a_crypto_invoice_is_created_with_an_exact_amount_and_the_payload(
    cryptopay: CryptoPay, cryptobot: CryptoPayClient
) -> None:
    invoice = cryptobot.create_invoice(
        Decimal("4.99"), asset="USDT", description="30 days", payload="payment:8d2b", expires_in_s=3600
    )

    assert (invoice.status, invoice.currency_type, invoice.asset, invoice.amount) == (
        "active",
        "crypto",
        "USDT",
        Decimal("4.99"),
    )
    assert invoice.payload == "payment:8d2b" and invoice.bot_invoice_url.startswith("https://t.me/")
    assert invoice.expiration_date is not None and invoice.created_at.tzinfo is UTC
    assert (invoice.expiration_date - invoice.created_at).total_seconds() == 3600
    sent = cryptopay.calls("createInvoice")[-1]
    assert sent["http_method"] == "POST" and sent["params"]["amount"] == "4.99"  # a string, never a float


def test_a_fiat_invoice_sends_accepted_assets_as_a_comma_separated_string(
    cryptopay: CryptoPay, cryptobot: CryptoPayClient
) -> None:
    invoice = cryptobot.create_invoice(
        "10", fiat="EUR", accepted_assets=["USDT", "TON"], allow_comments=False
    )

    assert (invoice.currency_type, invoice.fiat, invoice.asset, invoice.amount) == ("fiat", "EUR", None, 10)
    assert invoice.raw["accepted_assets"] == ["USDT", "TON"] and invoice.raw["allow_comments"] is False
    assert cryptopay.calls("createInvoice")[-1]["params"]["accepted_assets"] == "USDT,TON"


def test_a_paid_invoice_reads_what_was_paid_and_when_in_utc(
    cryptopay: CryptoPay, cryptobot: CryptoPayClient
) -> None:
    # Given an invoice paid in another asset and amount (a mismatch)
    created = cryptobot.create_invoice(10, asset="USDT", payload="payment:1")
    cryptopay.pay(created.invoice_id, paid_asset="TON", paid_amount="3.125")
    # When it is read back
    (invoice,) = cryptobot.get_invoices([created.invoice_id])
    # Then the payment is there, exactly
    assert invoice.paid and (invoice.paid_asset, invoice.paid_amount) == ("TON", Decimal("3.125"))
    assert invoice.amount == Decimal(10) and invoice.payload == "payment:1"
    assert invoice.paid_at is not None and invoice.paid_at.tzinfo is UTC


def test_get_invoices_asks_in_batches_of_1000_each_with_its_count(
    cryptopay: CryptoPay, cryptobot: CryptoPayClient
) -> None:
    # Given 2,500 invoices
    cryptopay.admin("POST", "invoices", {"count": 2500, "invoice": {"asset": "USDT", "amount": "1"}})
    # When all of them (and an unknown id) are asked for
    invoices = cryptobot.get_invoices([*range(1, 2501), 99_999])
    # Then all arrive, in ceil(2501 / 1000) = 3 calls, each counting its ids
    assert sorted(i.invoice_id for i in invoices) == list(range(1, 2501))
    calls = cryptopay.calls("getInvoices")
    assert [c["params"]["count"] for c in calls] == [1000, 1000, 501]
    assert [len(c["params"]["invoice_ids"].split(",")) for c in calls] == [1000, 1000, 501]


def test_no_ids_means_no_call(cryptopay: CryptoPay, cryptobot: CryptoPayClient) -> None:
    assert cryptobot.get_invoices([]) == []
    assert cryptopay.calls() == []


def test_a_page_of_invoices_by_status(cryptopay: CryptoPay, cryptobot: CryptoPayClient) -> None:
    first, second = (cryptobot.create_invoice(1, asset="USDT") for _ in range(2))
    cryptopay.pay(first.invoice_id)

    assert [i.invoice_id for i in cryptobot.invoices(status="paid")] == [first.invoice_id]
    assert [i.invoice_id for i in cryptobot.invoices(count=1)] == [second.invoice_id]


@pytest.mark.parametrize(
    ("value", "expected"),
    [("125.50", Decimal("125.50")), ("0.00000001", Decimal("1e-8")), (3, Decimal(3)), (0.1, Decimal("0.1"))],
)
def test_amounts_parse_as_decimals_from_strings_and_numbers(value: Any, expected: Decimal) -> None:
    assert parse_amount(value) == expected
    assert Invoice.from_json({**INVOICE, "amount": value}).amount == expected


@pytest.mark.parametrize("value", ["abc", "NaN", True, None, [1]])
def test_an_amount_that_is_not_a_number_is_refused(value: Any) -> None:
    with pytest.raises(ValueError):
        parse_amount(value)


def test_a_paid_crypto_invoice_without_paid_fields_was_paid_in_its_own_asset() -> None:
    invoice = Invoice.from_json(INVOICE)

    assert (invoice.paid_asset, invoice.paid_amount) == ("TON", Decimal("2.5"))
    assert invoice.paid_at == datetime(2025, 8, 1, 4, 5, tzinfo=UTC)


def test_a_malformed_invoice_names_its_id_and_fields_never_their_values() -> None:
    with pytest.raises(CryptoPayUnavailable, match=r"malformed invoice.*invoice_id 7, fields \[") as raised:
        Invoice.from_json({**INVOICE, "amount": "lots", "payload": "secret-payload"})

    assert "secret-payload" not in str(raised.value)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"amount": 1}, "give exactly one of asset"),
        ({"amount": 1, "asset": "TON", "fiat": "USD"}, "give exactly one of asset"),
        ({"amount": 1, "asset": "TON", "accepted_assets": ["TON"]}, "accepted_assets is only for fiat"),
        ({"amount": "0", "asset": "TON"}, "amount must be above 0"),
        ({"amount": "a lot", "asset": "TON"}, "is not a decimal amount"),
    ],
)
def test_arguments_that_cannot_make_an_invoice_fail_before_any_call(
    cryptopay: CryptoPay, cryptobot: CryptoPayClient, kwargs: dict[str, Any], error: str
) -> None:
    with pytest.raises(ValueError, match=error):
        cryptobot.create_invoice(**kwargs)
    assert cryptopay.calls() == []


def test_a_float_amount_is_refused(cryptobot: CryptoPayClient) -> None:
    with pytest.raises(TypeError, match="not float"):
        cryptobot.create_invoice(1.1, asset="TON")  # type: ignore[arg-type]


def test_a_webhook_signature_is_checked_on_the_raw_bytes(cryptopay: CryptoPay, receiver: Receiver) -> None:
    # Given a paid invoice whose update the sandbox delivered
    cryptopay.webhook(receiver.url)
    cryptopay.pay(cryptopay.invoice(description="Подписка")["invoice_id"])
    (update,) = receiver.wait_for(1)
    signature = update.header("crypto-pay-api-signature")
    # Then its signature holds for the app token only, for those exact bytes only
    assert signature_valid(TOKEN, update.body, signature)
    assert not signature_valid("4242:another-app", update.body, signature)
    assert not signature_valid(TOKEN, update.body.replace(b'"paid"', b'"active"'), signature)
    assert not signature_valid(TOKEN, update.body, None) and not signature_valid(TOKEN, update.body, "")


# --- errors ---


def test_a_rejected_token_is_a_configuration_error_that_names_the_setting_not_the_token(
    cryptopay: CryptoPay,
) -> None:
    token = "4242:wrong-token-never-shown"
    client = CryptoPayClient(cryptopay.url, token, timeout_s=5)

    with pytest.raises(
        CryptoPayAuthError, match="401 UNAUTHORIZED — CRYPTOBOT_TOKEN is not accepted"
    ) as raised:
        client.get_me()

    error = raised.value
    assert isinstance(error, PermanentError) and isinstance(error, ConfigurationError)
    assert (error.status, error.error_name) == (401, "UNAUTHORIZED")
    assert token not in str(error) and token not in repr(client)
    client.close()


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"amount": "0.001", "asset": "USDT"}, "AMOUNT_TOO_SMALL"),
        ({"amount": "1", "asset": "XRP"}, "UNSUPPORTED_ASSET"),
        ({"amount": "1", "asset": "USDT", "paid_btn_name": "openBot"}, "PAID_BTN_URL_REQUIRED"),
    ],
)
def test_a_refused_request_is_permanent_and_names_the_error(
    cryptobot: CryptoPayClient, kwargs: dict[str, Any], name: str
) -> None:
    with pytest.raises(CryptoPayRejected, match=f"cryptobot createInvoice: 400 {name}") as raised:
        cryptobot.create_invoice(**kwargs)

    assert isinstance(raised.value, PermanentError) and not isinstance(raised.value, UpstreamUnavailable)
    assert (raised.value.status, raised.value.error_name) == (400, name)


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_are_transient(cryptopay: CryptoPay, cryptobot: CryptoPayClient, status: int) -> None:
    cryptopay.faults(server_error={"count": 1, "status": status})

    with pytest.raises(CryptoPayUnavailable) as raised:
        cryptobot.get_me()

    assert isinstance(raised.value, ServiceUnavailable) and isinstance(raised.value, UpstreamUnavailable)
    assert raised.value.status == status and raised.value.service == "cryptobot"
    assert cryptobot.get_me().name == "Sandbox App"  # the fault was one call long


def test_the_api_500_app_error_is_transient_and_named(
    cryptopay: CryptoPay, cryptobot: CryptoPayClient
) -> None:
    cryptopay.faults(server_error={"count": 1, "status": 500})

    with pytest.raises(CryptoPayUnavailable, match="INTERNAL_SERVER_ERROR"):
        cryptobot.create_invoice(1, asset="USDT")


def test_a_service_that_closes_every_connection_is_unavailable(
    cryptopay: CryptoPay, cryptobot: CryptoPayClient
) -> None:
    cryptopay.faults(down=True)

    with pytest.raises(CryptoPayUnavailable, match="ConnectionError") as raised:
        cryptobot.get_invoices([1])

    assert raised.value.status is None


def test_a_slow_service_times_out_as_unavailable(cryptopay: CryptoPay) -> None:
    cryptopay.faults(latency_ms=60_000)
    client = CryptoPayClient(cryptopay.url, TOKEN, timeout_s=0.3)

    with pytest.raises(CryptoPayUnavailable, match="Timeout"):
        client.get_me()
    client.close()


def test_server_errors_open_the_breaker_so_a_dead_service_is_not_hammered(
    cryptopay: CryptoPay, cryptobot: CryptoPayClient
) -> None:
    cryptopay.faults(server_error={"count": 100, "status": 503})
    for _ in range(3):
        with pytest.raises(CryptoPayUnavailable, match="HTTP 503"):
            cryptobot.get_me()

    with pytest.raises(CryptoPayUnavailable, match="circuit breaker open"):
        cryptobot.get_me()

    assert len(cryptopay.calls()) == 3 and cryptobot.breaker.state == "open"


def test_a_refusal_is_an_answer_and_keeps_the_breaker_closed(
    cryptopay: CryptoPay, cryptobot: CryptoPayClient
) -> None:
    for _ in range(4):
        with pytest.raises(CryptoPayRejected):
            cryptobot.create_invoice("0.001", asset="USDT")

    assert cryptobot.breaker.state == "closed"


def test_the_token_is_sent_as_a_header_and_never_logged(
    cryptopay: CryptoPay, caplog: pytest.LogCaptureFixture
) -> None:
    # Given the suite's secret CRYPTOBOT_TOKEN, accepted by the sandbox, and every logger at DEBUG
    token = os.environ["CRYPTOBOT_TOKEN"]
    cryptopay.admin("POST", "tokens", {"token": token})
    breaker = CircuitBreaker(BreakerConfig(failures=2, cooldown_s=60), service="cryptobot")
    client = CryptoPayClient(f"{cryptopay.url}/api/", token, timeout_s=0.5, breaker=breaker)
    caplog.set_level(logging.DEBUG)
    # When calls succeed, time out and open the breaker
    assert client.get_me().app_id == 4242
    cryptopay.faults(latency_ms=60_000)
    errors = []
    for _ in range(3):
        with pytest.raises(CryptoPayUnavailable) as raised:
            client.get_me()
        errors.append(raised.value)
    # Then the token is in no log line, no error message and no repr
    assert "circuit breaker opened" in caplog.text
    assert token not in caplog.text
    assert all(token not in str(e) and token not in repr(e) for e in errors)
    assert token not in repr(client)
    client.close()


def test_the_runtime_builds_the_client_from_the_settings(cryptopay: CryptoPay) -> None:
    # Given settings naming the sandbox, the suite's token and a short timeout
    settings = load_settings({**os.environ, "CRYPTOBOT_API_URL": cryptopay.url, "CRYPTOBOT_TIMEOUT_S": "0.3"})
    cryptopay.admin("POST", "tokens", {"token": settings.cryptobot_token.get_secret_value()})
    runtime = Runtime(settings)
    # When its client calls, then calls a slow Crypto Pay
    client = runtime.cryptobot
    app = client.get_me()
    cryptopay.faults(latency_ms=60_000)
    # Then it is one client per runtime, with that token and that timeout
    assert runtime.cryptobot is client and app.app_id == 4242
    with pytest.raises(CryptoPayUnavailable, match=r"read timeout=0\.3"):
        client.get_me()
    client.close()
