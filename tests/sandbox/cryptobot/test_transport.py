"""How the fake Crypto Pay is reached, over real HTTP: every client style of CONTRACTS.md (GET with a
query string, POST JSON with numbers, POST form and multipart, ``getMe`` as a GET with an empty JSON
body), the token header, the envelopes with the HTTP status equal to the code, and the API faults."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import requests

from tests.fixtures.cryptobot import TOKEN, CryptoPay
from tests.sandbox.cryptobot.helpers import ISO_MS, REQUIRED_INVOICE_FIELDS, assert_error

HEADERS = {"Crypto-Pay-API-Token": TOKEN}
Transport = Callable[[str, dict[str, Any]], requests.Response]


def _text(value: Any) -> str:
    """How query-string clients send a value: booleans as "true"/"false", the rest as text."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def _query(url: str, params: dict[str, Any]) -> requests.Response:
    return requests.get(url, params={k: _text(v) for k, v in params.items()}, headers=HEADERS, timeout=10)


def _json(url: str, params: dict[str, Any]) -> requests.Response:
    return requests.post(url, json=params, headers=HEADERS, timeout=10)


def _form(url: str, params: dict[str, Any]) -> requests.Response:
    return requests.post(url, data={k: _text(v) for k, v in params.items()}, headers=HEADERS, timeout=10)


def _multipart(url: str, params: dict[str, Any]) -> requests.Response:
    files = {k: (None, _text(v)) for k, v in params.items()}
    return requests.post(url, files=files, headers=HEADERS, timeout=10)


@pytest.mark.parametrize(
    "transport", [_query, _json, _form, _multipart], ids=["get-query", "post-json", "post-form", "multipart"]
)
def test_every_client_style_creates_and_reads_the_same_invoice(
    cryptopay: CryptoPay, transport: Transport
) -> None:
    # Given createInvoice parameters: amount a JSON number (text elsewhere), a boolean, a comma-joined list
    params = {
        "currency_type": "fiat",
        "fiat": "EUR",
        "amount": 12.5,
        "accepted_assets": "USDT,TON",
        "allow_comments": False,
        "expires_in": 600,
        "payload": "payment:7f1c",
    }
    # When the invoice is created and read back in that style
    created = transport(f"{cryptopay.url}/api/createInvoice", params)
    found = transport(f"{cryptopay.url}/api/getInvoices", {"invoice_ids": "1", "count": 1})
    # Then both succeed and agree, with every parameter taken as meant
    assert created.status_code == 200, created.text
    invoice = created.json()["result"]
    assert found.json() == {"ok": True, "result": {"items": [invoice]}}
    assert (invoice["amount"], invoice["fiat"], invoice["accepted_assets"]) == (
        "12.5",
        "EUR",
        ["USDT", "TON"],
    )
    assert (invoice["allow_comments"], invoice["allow_anonymous"], invoice["payload"]) == (
        False,
        True,
        "payment:7f1c",
    )
    assert set(invoice) >= REQUIRED_INVOICE_FIELDS


def test_get_me_as_a_get_with_an_empty_json_body_answers_the_app(cryptopay: CryptoPay) -> None:
    reply = requests.get(
        f"{cryptopay.url}/api/getMe",
        data=b"",
        headers={**HEADERS, "Content-Type": "application/json"},
        timeout=10,
    )

    assert reply.status_code == 200
    assert reply.headers["Content-Type"].startswith("application/json")
    result = reply.json()["result"]
    assert set(result) == {"app_id", "name", "payment_processing_bot_username"}
    assert isinstance(result["app_id"], int) and result["payment_processing_bot_username"] == "CryptoBot"


def test_the_app_id_is_the_numeric_prefix_of_a_real_looking_token(cryptopay: CryptoPay) -> None:
    cryptopay.admin("POST", "tokens", {"token": "12345:AAzQcZWQqQAbsfgPnOLr4FZ7HzHpTq5QdGa"})

    result = cryptopay.result("getMe", token="12345:AAzQcZWQqQAbsfgPnOLr4FZ7HzHpTq5QdGa")

    assert result["app_id"] == 12345


@pytest.mark.parametrize(
    "headers", [{}, {"Crypto-Pay-API-Token": "123:not-a-token"}], ids=["none", "unknown"]
)
def test_a_missing_or_unknown_token_is_401_unauthorized(
    cryptopay: CryptoPay, headers: dict[str, str]
) -> None:
    reply = requests.post(f"{cryptopay.url}/api/getMe", json={}, headers=headers, timeout=10)

    assert_error(reply, 401, "UNAUTHORIZED")
    assert cryptopay.calls()[-1]["token_known"] is False


def test_the_token_header_name_is_case_insensitive_and_never_logged(cryptopay: CryptoPay) -> None:
    reply = requests.get(f"{cryptopay.url}/api/getMe", headers={"crypto-pay-api-token": TOKEN}, timeout=10)

    assert reply.status_code == 200
    assert TOKEN not in json.dumps(cryptopay.calls())


def test_an_unknown_method_is_405_method_not_found(cryptopay: CryptoPay) -> None:
    assert_error(cryptopay.api("getBalances", {}), 405, "METHOD_NOT_FOUND")
    assert_error(cryptopay.api("getme"), 405, "METHOD_NOT_FOUND")  # method names are case-sensitive


@pytest.mark.parametrize(
    ("body", "why"),
    [(b"{not json", "neither JSON nor a form"), (b"[1, 2]", "must be an object, not list")],
    ids=["not-json", "array"],
)
def test_a_body_that_is_not_a_json_object_or_a_form_is_400(
    cryptopay: CryptoPay, body: bytes, why: str
) -> None:
    reply = requests.post(
        f"{cryptopay.url}/api/createInvoice",
        data=body,
        headers={**HEADERS, "Content-Type": "application/json"},
        timeout=10,
    )

    assert_error(reply, 400, "BODY_INVALID")
    assert why in cryptopay.calls()[-1]["detail"]


def test_replies_are_compact_utf8_json_with_non_ascii_unescaped(cryptopay: CryptoPay) -> None:
    reply = cryptopay.api("createInvoice", {"asset": "TON", "amount": "2", "description": "Подписка 30 дней"})

    assert "Подписка 30 дней".encode() in reply.content and b"\\u" not in reply.content
    assert b'{"ok":true,"result":{"invoice_id":1,' in reply.content
    assert ISO_MS.fullmatch(reply.json()["result"]["created_at"])


# --- faults ---


def test_injected_500s_are_the_api_envelope_and_stop_after_their_count(cryptopay: CryptoPay) -> None:
    cryptopay.faults(server_error={"count": 2, "status": 500})

    assert_error(cryptopay.api("getMe"), 500, "INTERNAL_SERVER_ERROR")
    assert_error(cryptopay.api("getMe"), 500, "INTERNAL_SERVER_ERROR")
    assert cryptopay.api("getMe").status_code == 200
    assert cryptopay.faults()["server_error_count"] == 0


def test_an_injected_502_is_plain_text_as_a_proxy_in_front_answers(cryptopay: CryptoPay) -> None:
    cryptopay.faults(server_error={"count": 1, "status": 502})

    reply = cryptopay.api("getMe")

    assert (reply.status_code, reply.text, reply.headers["Content-Type"].split(";")[0]) == (
        502,
        "502 Bad Gateway",
        "text/plain",
    )


def test_down_closes_every_api_connection_unanswered_while_admin_answers(cryptopay: CryptoPay) -> None:
    cryptopay.faults(down=True)

    with pytest.raises(requests.ConnectionError):
        cryptopay.api("getMe")
    assert [c["status"] for c in cryptopay.calls()] == ["dropped"]

    cryptopay.faults(down=None)
    assert cryptopay.api("getMe").status_code == 200


def test_latency_holds_every_answer_until_the_fault_changes(cryptopay: CryptoPay) -> None:
    cryptopay.faults(latency_ms=60_000)

    with pytest.raises(requests.Timeout):
        cryptopay.api("getMe", timeout=0.3)

    cryptopay.faults(latency_ms=None)  # releases the held call too
    assert cryptopay.api("getMe").status_code == 200


def test_token_rejected_answers_every_call_401(cryptopay: CryptoPay) -> None:
    cryptopay.faults(token_rejected=True)

    assert_error(cryptopay.api("getMe"), 401, "UNAUTHORIZED")
    assert cryptopay.calls()[-1]["detail"] == "token_rejected fault"
