"""``createInvoice`` and ``getInvoices`` of the fake Crypto Pay over real HTTP: the Invoice object
(required fields, amounts as decimal strings, times, expiry, payload, accepted assets), the 400s of
the contract with the HTTP status equal to the code, and ``getInvoices``' filters and ``items``
envelope."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from tests.fixtures.cryptobot import CryptoPay
from tests.fixtures.worker import wait_for
from tests.sandbox.cryptobot.helpers import DECIMAL, ISO_MS, REQUIRED_INVOICE_FIELDS, assert_error

ALL_ASSETS = ["USDT", "TON", "BTC", "ETH", "LTC", "BNB", "TRX", "USDC", "SOL", "DOGE", "NOT", "JET"]


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text)


# --- createInvoice ---


def test_a_crypto_invoice_has_every_required_field_and_amounts_as_decimal_strings(
    cryptopay: CryptoPay,
) -> None:
    invoice = cryptopay.invoice(asset="TON", amount="125.50", description="30 days", payload="payment:42")

    assert set(invoice) >= REQUIRED_INVOICE_FIELDS
    assert (invoice["invoice_id"], invoice["status"], invoice["currency_type"], invoice["asset"]) == (
        1,
        "active",
        "crypto",
        "TON",
    )
    assert invoice["amount"] == "125.5" and DECIMAL.fullmatch(invoice["amount"])
    assert ISO_MS.fullmatch(invoice["created_at"])
    assert invoice["hash"] in invoice["bot_invoice_url"] and invoice["pay_url"] == invoice["bot_invoice_url"]
    assert (invoice["description"], invoice["payload"]) == ("30 days", "payment:42")
    assert "expiration_date" not in invoice and "paid_at" not in invoice and "fiat" not in invoice


def test_expiration_date_is_created_at_plus_expires_in(cryptopay: CryptoPay) -> None:
    invoice = cryptopay.invoice(expires_in=3600)

    assert ISO_MS.fullmatch(invoice["expiration_date"])
    assert _when(invoice["expiration_date"]) - _when(invoice["created_at"]) == timedelta(seconds=3600)


def test_a_fiat_invoice_takes_accepted_assets_as_a_string_and_returns_an_array(cryptopay: CryptoPay) -> None:
    narrow = cryptopay.invoice(currency_type="fiat", fiat="USD", amount=5, accepted_assets="USDT, TON")
    every = cryptopay.invoice(currency_type="fiat", fiat="RUB", amount="499")

    assert (narrow["fiat"], narrow["amount"], narrow["accepted_assets"]) == ("USD", "5", ["USDT", "TON"])
    assert "asset" not in narrow
    assert every["accepted_assets"] == ALL_ASSETS


def test_accepted_assets_sent_as_a_json_array_is_the_real_apis_500_app_error(cryptopay: CryptoPay) -> None:
    reply = cryptopay.api(
        "createInvoice", {"currency_type": "fiat", "fiat": "USD", "amount": 5, "accepted_assets": ["USDT"]}
    )

    assert_error(reply, 500, "APP_ERROR")
    assert "comma-separated string" in cryptopay.calls()[-1]["detail"]


def test_the_payload_is_kept_byte_for_byte_up_to_4_kb(cryptopay: CryptoPay) -> None:
    start = '{"payment": "8d2b", "note": "оплата ✓"}'
    payload = start + "x" * (4096 - len(start.encode()))

    invoice = cryptopay.invoice(payload=payload)
    too_big = cryptopay.api("createInvoice", {"asset": "USDT", "amount": "1", "payload": payload + "x"})

    assert (
        cryptopay.result("getInvoices", {"invoice_ids": str(invoice["invoice_id"])})["items"][0]["payload"]
        == payload
    )
    assert_error(too_big, 400, "PAYLOAD_TOO_LONG")


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"paid_btn_name": "openBot"}, "PAID_BTN_URL_REQUIRED"),
        ({"asset": "XRP"}, "UNSUPPORTED_ASSET"),
        ({"currency_type": "fiat", "fiat": "USD", "accepted_assets": "USDT,XRP"}, "UNSUPPORTED_ASSET"),
        ({"amount": "0.001"}, "AMOUNT_TOO_SMALL"),
        ({"asset": "BTC", "amount": "1"}, "AMOUNT_TOO_BIG"),
        ({"currency_type": "fiat", "fiat": "USD", "amount": 25001}, "AMOUNT_TOO_BIG"),
        ({"amount": "ten"}, "AMOUNT_INVALID"),
        ({"amount": "-1"}, "AMOUNT_INVALID"),
        ({"amount": "1e3"}, "AMOUNT_INVALID"),
        ({"amount": None}, "AMOUNT_INVALID"),
        ({"amount": True}, "AMOUNT_INVALID"),
        ({"expires_in": 0}, "EXPIRES_IN_INVALID"),
        ({"expires_in": 2678401}, "EXPIRES_IN_INVALID"),
        ({"expires_in": "soon"}, "EXPIRES_IN_INVALID"),
        ({"currency_type": "card"}, "CURRENCY_TYPE_INVALID"),
        ({"asset": None}, "ASSET_REQUIRED"),
        ({"currency_type": "fiat"}, "FIAT_REQUIRED"),
        ({"currency_type": "fiat", "fiat": "XYZ"}, "FIAT_INVALID"),
        ({"accepted_assets": "USDT"}, "ACCEPTED_ASSETS_INVALID"),
        ({"description": "d" * 1025}, "DESCRIPTION_TOO_LONG"),
        ({"hidden_message": "h" * 2049}, "HIDDEN_MESSAGE_TOO_LONG"),
        ({"description": 42}, "DESCRIPTION_INVALID"),
        ({"paid_btn_name": "openSite", "paid_btn_url": "https://t.me/x"}, "PAID_BTN_NAME_INVALID"),
        ({"paid_btn_name": "openBot", "paid_btn_url": "t.me/x"}, "PAID_BTN_URL_INVALID"),
        ({"allow_comments": "yes"}, "ALLOW_COMMENTS_INVALID"),
        ({"swap_to": "DOGE"}, "SWAP_TO_INVALID"),
    ],
)
def test_bad_create_parameters_are_400s_named_after_what_is_wrong(
    cryptopay: CryptoPay, params: dict[str, Any], name: str
) -> None:
    body = {k: v for k, v in {"asset": "USDT", "amount": "10", **params}.items() if v is not None}
    if "fiat" in body:
        body.pop("asset")

    reply = cryptopay.api("createInvoice", body)

    assert_error(reply, 400, name)
    assert cryptopay.calls()[-1]["detail"], "the call log says why"
    assert cryptopay.admin("GET", "invoices") == []


def test_booleans_as_query_strings_accept_any_case_and_nothing_else(cryptopay: CryptoPay) -> None:
    assert cryptopay.invoice(allow_anonymous="FALSE", allow_comments="True")["allow_anonymous"] is False
    assert_error(
        cryptopay.api("createInvoice", {"asset": "USDT", "amount": "1", "allow_anonymous": "1"}),
        400,
        "ALLOW_ANONYMOUS_INVALID",
    )


# --- getInvoices ---


def test_get_invoices_wraps_the_list_in_items_newest_first(cryptopay: CryptoPay) -> None:
    ids = [cryptopay.invoice()["invoice_id"] for _ in range(3)]

    result = cryptopay.result("getInvoices", {})

    assert set(result) == {"items"}
    assert [i["invoice_id"] for i in result["items"]] == ids[::-1]


def test_get_invoices_filters_by_ids_status_asset_and_fiat(cryptopay: CryptoPay) -> None:
    ton = cryptopay.invoice(asset="TON", amount="3")["invoice_id"]
    usdt = cryptopay.invoice()["invoice_id"]
    eur = cryptopay.invoice(currency_type="fiat", fiat="EUR", amount="9")["invoice_id"]
    cryptopay.pay(usdt)

    def ids(**params: Any) -> list[int]:
        return [i["invoice_id"] for i in cryptopay.result("getInvoices", params)["items"]]

    assert ids(invoice_ids=f"{ton},{eur},999") == [eur, ton]
    assert ids(status="paid") == [usdt] and ids(status="active") == [eur, ton]
    assert ids(asset="TON") == [ton] and ids(fiat="EUR") == [eur]
    assert ids(invoice_ids=str(usdt), status="active") == []


def test_count_defaults_to_100_and_offset_skips(cryptopay: CryptoPay) -> None:
    # Given 150 invoices
    cryptopay.admin("POST", "invoices", {"count": 150, "invoice": {"asset": "USDT", "amount": "1"}})
    all_ids = ",".join(str(i) for i in range(1, 151))
    # When they are asked for by id without a count, then with one, then a page further
    default = cryptopay.result("getInvoices", {"invoice_ids": all_ids})["items"]
    counted = cryptopay.result("getInvoices", {"invoice_ids": all_ids, "count": 150})["items"]
    page = cryptopay.result("getInvoices", {"offset": 140, "count": 20})["items"]
    # Then the default count silently cuts the answer to 100
    assert (len(default), len(counted)) == (100, 150)
    assert [i["invoice_id"] for i in page] == list(range(10, 0, -1))


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"count": 0}, "COUNT_INVALID"),
        ({"count": 1001}, "COUNT_INVALID"),
        ({"offset": -1}, "OFFSET_INVALID"),
        ({"status": "expired"}, "STATUS_INVALID"),
        ({"invoice_ids": "1;2"}, "INVOICE_IDS_INVALID"),
        ({"invoice_ids": [1, 2]}, "INVOICE_IDS_INVALID"),
        ({"asset": "XRP"}, "UNSUPPORTED_ASSET"),
        ({"fiat": "XYZ"}, "FIAT_INVALID"),
    ],
)
def test_bad_get_invoices_parameters_are_400s(
    cryptopay: CryptoPay, params: dict[str, Any], name: str
) -> None:
    assert_error(cryptopay.api("getInvoices", params), 400, name)


def test_an_app_sees_only_its_own_invoices(cryptopay: CryptoPay) -> None:
    cryptopay.admin("POST", "tokens", {"token": "777:other-app"})
    cryptopay.invoice()

    other = cryptopay.result("getInvoices", {"invoice_ids": "1"}, token="777:other-app")

    assert other == {"items": []}


def test_an_invoice_expires_by_itself_at_its_expiration_date(cryptopay: CryptoPay) -> None:
    invoice_id = cryptopay.invoice(expires_in=1)["invoice_id"]

    def status() -> str:
        return str(cryptopay.result("getInvoices", {"invoice_ids": str(invoice_id)})["items"][0]["status"])

    assert status() == "active"
    wait_for(lambda: status() == "expired", 10, "the invoice to expire", poll_s=0.1)
