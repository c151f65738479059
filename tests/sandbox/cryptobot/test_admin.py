"""The fake Crypto Pay's admin API over real HTTP: paying and expiring invoices (what a payment adds to
the Invoice), listing and seeding them, tokens, reset, the call log and stats, and bad admin input
answered 400 (or 404) saying what was wrong."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from sandbox.cryptobot.format import app_id
from sandbox.cryptobot.state import CryptoBotState
from tests.fixtures.cryptobot import TOKEN, CryptoPay
from tests.sandbox.cryptobot.helpers import DECIMAL, ISO_MS

PAID_FIELDS = {
    "paid_asset", "paid_amount", "paid_usd_rate", "fee_asset", "fee_amount", "fee_in_usd", "paid_anonymously",
    "paid_at",
}  # fmt: skip


def test_paying_a_crypto_invoice_adds_what_was_paid_and_when(cryptopay: CryptoPay) -> None:
    invoice = cryptopay.invoice(asset="TON", amount="2.5")

    paid = cryptopay.pay(invoice["invoice_id"])

    assert paid["status"] == "paid" and set(paid) >= PAID_FIELDS
    assert (paid["paid_asset"], paid["paid_amount"], paid["fee_asset"]) == ("TON", "2.5", "TON")
    assert ISO_MS.fullmatch(paid["paid_at"]) and paid["paid_at"] >= paid["created_at"]
    assert all(DECIMAL.fullmatch(paid[k]) for k in ("paid_usd_rate", "fee_amount", "fee_in_usd"))
    assert Decimal(paid["fee_amount"]) == Decimal("2.5") * Decimal("0.03")
    assert cryptopay.result("getInvoices", {"invoice_ids": str(invoice["invoice_id"])})["items"] == [paid]


def test_a_fiat_invoice_is_paid_in_usdt_at_the_fiat_rate(cryptopay: CryptoPay) -> None:
    invoice = cryptopay.invoice(currency_type="fiat", fiat="EUR", amount="10", accepted_assets="TON,USDT")

    paid = cryptopay.pay(invoice["invoice_id"])

    # 10 EUR at 1.08 USD each, in USDT at 1 USD: 10.8 USDT; one USDT is 1 / 1.08 EUR
    assert (paid["paid_asset"], paid["paid_amount"], paid["paid_fiat_rate"]) == ("USDT", "10.8", "0.92592593")
    assert abs(Decimal(paid["paid_amount"]) * Decimal(paid["paid_fiat_rate"]) - 10) < Decimal("1e-6")


def test_a_payment_can_differ_from_the_invoice_for_mismatch_tests(cryptopay: CryptoPay) -> None:
    invoice = cryptopay.invoice(amount="10")

    paid = cryptopay.pay(
        invoice["invoice_id"], paid_asset="TON", paid_amount=1.25, comment="спасибо", paid_anonymously=True
    )

    assert (paid["asset"], paid["amount"]) == ("USDT", "10")
    assert (paid["paid_asset"], paid["paid_amount"], paid["comment"], paid["paid_anonymously"]) == (
        "TON",
        "1.25",
        "спасибо",
        True,
    )


def test_only_an_active_invoice_can_be_paid_and_a_paid_one_cannot_expire(cryptopay: CryptoPay) -> None:
    paid, expired = cryptopay.invoice()["invoice_id"], cryptopay.invoice()["invoice_id"]
    cryptopay.pay(paid)
    assert cryptopay.admin("POST", f"invoices/{expired}/expire")["status"] == "expired"

    again = cryptopay.admin("POST", f"invoices/{paid}/pay", status=400)
    late = cryptopay.admin("POST", f"invoices/{expired}/pay", status=400)
    too_late = cryptopay.admin("POST", f"invoices/{paid}/expire", status=400)

    assert again == {"ok": False, "error": f"invoice {paid} is paid; only an active invoice can be paid"}
    assert late["error"] == f"invoice {expired} is expired; only an active invoice can be paid"
    assert too_late["error"] == f"invoice {paid} is paid; a paid invoice cannot expire"


@pytest.mark.parametrize("action", ["pay", "expire"])
def test_an_unknown_invoice_is_404(cryptopay: CryptoPay, action: str) -> None:
    assert cryptopay.admin("POST", f"invoices/9/{action}", status=404) == {
        "ok": False,
        "error": "no invoice 9",
    }
    assert cryptopay.admin("GET", "invoices/9", status=404) == {"ok": False, "error": "no invoice 9"}


def test_the_invoice_list_covers_every_app_and_filters_by_status(cryptopay: CryptoPay) -> None:
    cryptopay.admin("POST", "tokens", {"token": "777:other-app"})
    mine = cryptopay.invoice()["invoice_id"]
    theirs = cryptopay.result("createInvoice", {"asset": "TON", "amount": "1"}, token="777:other-app")
    cryptopay.pay(mine)

    listed = cryptopay.admin("GET", "invoices")
    paid = cryptopay.admin("GET", "invoices?status=paid")

    assert [(i["invoice_id"], i["app_id"]) for i in listed] == [
        (mine, app_id(TOKEN)),
        (theirs["invoice_id"], 777),
    ]
    assert [i["invoice_id"] for i in paid] == [mine]
    assert cryptopay.admin("GET", f"invoices/{mine}")["status"] == "paid"


def test_seeding_creates_many_invoices_checked_as_the_api_checks_them(cryptopay: CryptoPay) -> None:
    seeded = cryptopay.admin("POST", "invoices", {"count": 3, "invoice": {"asset": "TON", "amount": "2"}})
    refused = cryptopay.admin(
        "POST", "invoices", {"count": 1, "invoice": {"asset": "XRP", "amount": "2"}}, status=400
    )

    assert seeded == {"ok": True, "created": 3, "first_id": 1, "last_id": 3}
    assert len({i["hash"] for i in cryptopay.result("getInvoices", {})["items"]}) == 3
    assert refused["error"].startswith("invoice: UNSUPPORTED_ASSET: asset 'XRP' is not one of")


def test_reset_forgets_invoices_tokens_faults_and_logs(cryptopay: CryptoPay) -> None:
    cryptopay.admin("POST", "tokens", {"token": "777:other-app"})
    cryptopay.invoice()
    cryptopay.faults(server_error={"count": 5, "status": 503})

    cryptopay.admin("POST", "reset")

    assert cryptopay.admin("GET", "invoices") == [] and cryptopay.calls() == []
    assert cryptopay.faults()["server_error_count"] == 0
    assert cryptopay.api("getMe", token="777:other-app").status_code == 401
    assert cryptopay.invoice()["invoice_id"] == 1


def test_the_call_log_and_stats_say_what_was_answered_and_why(cryptopay: CryptoPay) -> None:
    cryptopay.invoice()
    cryptopay.api("createInvoice", {"asset": "USDT", "amount": "0.001"}, headers={"X-Request-ID": "r-1"})
    cryptopay.api("getMe", token="wrong")

    calls = cryptopay.calls()
    stats = cryptopay.admin("GET", "stats")

    assert [(c["method"], c["status"], c["error"]) for c in calls] == [
        ("createInvoice", 200, None),
        ("createInvoice", 400, "AMOUNT_TOO_SMALL"),
        ("getMe", 401, "UNAUTHORIZED"),
    ]
    assert calls[1]["request_id"] == "r-1" and "0.01 USD" in calls[1]["detail"]
    assert calls[1]["params"] == {"asset": "USDT", "amount": "0.001"}
    assert cryptopay.calls("getMe") == calls[2:]
    assert stats["total"] == 3 and stats["by_method"]["createInvoice"] == {"200": 1, "400": 1}


@pytest.mark.parametrize(
    ("path", "body", "error"),
    [
        ("tokens", {"token": "with space"}, "token must be a non-empty string without spaces"),
        ("tokens", [1], "expected a JSON object body"),
        ("invoices/1/pay", {"paid_asset": "XRP"}, "paid_asset 'XRP' is not one of"),
        ("invoices/1/pay", {"paid_amount": "-3"}, "paid_amount must be a positive decimal number"),
        ("invoices/1/pay", {"paid_anonymously": "yes"}, "paid_anonymously must be true or false"),
        ("invoices/1/pay", {"comment": 5}, "comment must be a string of at most 1024 characters"),
        ("invoices/1/pay", {"amount": "1"}, "unknown field 'amount'; known: paid_asset, paid_amount"),
        ("webhook", {"url": "ftp://x"}, "url must be an http:// or https:// URL"),
        ("webhook", {"url": "http://x", "retries": 99}, "retries must be at most 20"),
        ("webhook", {"url": "http://x", "timeout_s": 0}, "timeout_s must be a number of seconds above 0"),
        ("webhook", {"uri": "http://x"}, "unknown field 'uri'"),
        ("invoices", {"count": 0, "invoice": {}}, "count must be from 1 to 100000"),
        ("invoices", {"count": 2}, 'give {"count": N, "invoice": {createInvoice parameters}'),
        ("faults", {"meteor": True}, "unknown fault 'meteor'"),
        ("faults", {"server_error": {"count": 1, "status": 404}}, "status must be a known 5xx HTTP status"),
        ("faults", {"down": "yes"}, "down takes true or false"),
        ("faults", {"duplicate_delivery": 0}, "duplicate_delivery must be an integer of at least 1"),
        ("faults", {"delivery_lost": -1}, "delivery_lost must be a non-negative integer"),
        ("faults", {"stale_request_date": {"count": 1, "age": 5}}, 'stale_request_date takes {"count": N'),
    ],
)
def test_bad_admin_input_is_400_saying_what_was_wrong(
    cryptopay: CryptoPay, path: str, body: Any, error: str
) -> None:
    cryptopay.invoice()

    answer = cryptopay.admin("POST", path, body, status=400)

    assert answer["ok"] is False and error in answer["error"]
    assert cryptopay.admin("GET", "invoices/1")["status"] == "active"


@pytest.mark.parametrize("query", ["calls?since=x", "deliveries?since=-1", "invoices?status=open"])
def test_bad_admin_queries_are_400(cryptopay: CryptoPay, query: str) -> None:
    assert cryptopay.admin("GET", query, status=400)["ok"] is False


def test_the_state_answers_without_http() -> None:
    state = CryptoBotState()

    created = state.handle(
        "POST", "createInvoice", {"asset": "USDT", "amount": 3}, {"Crypto-Pay-API-Token": TOKEN}
    )
    refused = state.handle("GET", "getMe", {}, {})

    assert created is not None and created.body["result"]["amount"] == "3"
    assert refused is not None and (refused.status, refused.error_name) == (401, "UNAUTHORIZED")
