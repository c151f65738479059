"""Webhook delivery of the fake Crypto Pay, received by a real local HTTP server: the ``invoice_paid``
body and headers byte for byte, the signature verified exactly as CONTRACTS.md says, and every
delivery fault (duplicates, delay, loss, wrong signatures, stale dates), retries and failures."""

from __future__ import annotations

import hmac
import json
import re
import socket
from datetime import datetime

from tests.fixtures.cryptobot import TOKEN, CryptoPay, Received, Receiver, signature_of
from tests.sandbox.cryptobot.helpers import ISO_MS

HEX64 = re.compile(r"[0-9a-f]{64}")


def verified(received: Received, token: str = TOKEN) -> bool:
    """Verify as a receiver must: on the raw bytes, before parsing, in constant time."""
    sent = received.header("crypto-pay-api-signature") or ""
    return hmac.compare_digest(sent, signature_of(token, received.body))


def _paid_invoice(cryptopay: CryptoPay, **params: str) -> dict[str, object]:
    invoice = cryptopay.invoice(**params)
    return cryptopay.pay(int(invoice["invoice_id"]))


def test_a_paid_invoice_is_posted_signed_as_the_contract_says(
    cryptopay: CryptoPay, receiver: Receiver
) -> None:
    # Given a webhook and an invoice whose texts are not ASCII
    cryptopay.webhook(receiver.url)
    paid = _paid_invoice(cryptopay, description="Подписка: 30 дней", payload='{"payment":"ü-42"}')
    # When its update arrives
    (received,) = receiver.wait_for(1)
    # Then the headers are the real ones, spelled as the real service spells them
    assert received.path == "/webhooks/cryptobot"
    assert "crypto-pay-api-signature" in [name for name, _ in received.headers]
    assert received.header("Content-Type") == "application/json;charset=utf-8"
    assert HEX64.fullmatch(received.header("crypto-pay-api-signature") or "") and verified(received)
    # And the body is compact JSON with non-ASCII unescaped, the update of the invoice as paid
    update = json.loads(received.body)
    assert received.body == json.dumps(update, separators=(",", ":"), ensure_ascii=False).encode()
    assert "Подписка".encode() in received.body and b"\\u" not in received.body
    assert list(update) == ["update_id", "update_type", "request_date", "payload"]
    assert isinstance(update["update_id"], int) and update["update_type"] == "invoice_paid"
    assert ISO_MS.fullmatch(update["request_date"]) and update["payload"] == paid
    assert cryptopay.result("getInvoices", {"invoice_ids": str(paid["invoice_id"])})["items"] == [paid]


def test_each_attempt_is_logged_with_its_exact_body_and_signature(
    cryptopay: CryptoPay, receiver: Receiver
) -> None:
    cryptopay.webhook(receiver.url)
    paid = _paid_invoice(cryptopay)

    (received,) = receiver.wait_for(1)
    (entry,) = cryptopay.settled_deliveries(1)

    assert (entry["status"], entry["error"], entry["signature_valid"]) == (200, None, True)
    assert (entry["invoice_id"], entry["copy"], entry["attempt"], entry["url"]) == (
        paid["invoice_id"],
        1,
        1,
        receiver.url,
    )
    assert entry["body"].encode() == received.body
    assert entry["signature"] == received.header("crypto-pay-api-signature")
    assert cryptopay.admin("GET", "stats")["deliveries"] == {"200": 1}


def test_the_webhook_can_be_signed_with_another_app_token(cryptopay: CryptoPay, receiver: Receiver) -> None:
    cryptopay.webhook(receiver.url, token="4242:another-app-token")
    _paid_invoice(cryptopay)

    (received,) = receiver.wait_for(1)

    assert verified(received, "4242:another-app-token") and not verified(received, TOKEN)
    assert cryptopay.admin("GET", "webhook")["webhook"]["token_set"] is True


def test_without_a_webhook_nothing_is_delivered(cryptopay: CryptoPay, receiver: Receiver) -> None:
    _paid_invoice(cryptopay)

    assert cryptopay.state.deliveries_settled() and cryptopay.deliveries() == []
    assert cryptopay.admin("GET", "webhook") == {"ok": True, "webhook": None}


# --- delivery faults ---


def test_duplicate_delivery_posts_the_same_update_n_times(cryptopay: CryptoPay, receiver: Receiver) -> None:
    cryptopay.webhook(receiver.url)
    cryptopay.faults(duplicate_delivery=3)
    paid = _paid_invoice(cryptopay)

    received = receiver.wait_for(3)
    entries = cryptopay.settled_deliveries(3)

    updates = [json.loads(r.body) for r in received]
    assert {u["update_id"] for u in updates} == {1} and all(u["payload"] == paid for u in updates)
    assert all(verified(r) for r in received)
    assert sorted(e["copy"] for e in entries) == [1, 2, 3]


def test_a_delivery_delay_holds_each_update_back(cryptopay: CryptoPay, receiver: Receiver) -> None:
    cryptopay.webhook(receiver.url)
    cryptopay.faults(delivery_delay_ms=300)
    paid = _paid_invoice(cryptopay)

    receiver.wait_for(1)
    (entry,) = cryptopay.settled_deliveries(1)

    paid_at = datetime.fromisoformat(str(paid["paid_at"])).timestamp()
    assert entry["at"] - paid_at >= 0.299


def test_reset_drops_deliveries_still_waiting(cryptopay: CryptoPay, receiver: Receiver) -> None:
    cryptopay.webhook(receiver.url)
    cryptopay.faults(delivery_delay_ms=60_000)
    _paid_invoice(cryptopay)
    assert not cryptopay.state.deliveries_settled()

    cryptopay.admin("POST", "reset")

    assert cryptopay.state.deliveries_settled() and receiver.received == []


def test_lost_deliveries_never_arrive(cryptopay: CryptoPay, receiver: Receiver) -> None:
    cryptopay.webhook(receiver.url)
    cryptopay.faults(delivery_lost=1)
    _paid_invoice(cryptopay)
    second = _paid_invoice(cryptopay)

    (received,) = receiver.wait_for(1)
    entries = cryptopay.settled_deliveries(2)

    assert json.loads(received.body)["payload"]["invoice_id"] == second["invoice_id"]
    assert [e["status"] for e in entries] == ["lost", 200]
    assert cryptopay.faults()["delivery_lost"] == 0


def test_wrong_signatures_fail_verification_and_then_stop(cryptopay: CryptoPay, receiver: Receiver) -> None:
    cryptopay.webhook(receiver.url)
    cryptopay.faults(wrong_signature=1)
    _paid_invoice(cryptopay)
    _paid_invoice(cryptopay)

    received = receiver.wait_for(2)
    entries = cryptopay.settled_deliveries(2)

    assert [verified(r) for r in received] == [False, True]
    assert HEX64.fullmatch(received[0].header("crypto-pay-api-signature") or "")
    assert [e["signature_valid"] for e in entries] == [False, True]


def test_stale_request_dates_lie_in_the_past_by_the_given_age(
    cryptopay: CryptoPay, receiver: Receiver
) -> None:
    cryptopay.webhook(receiver.url)
    cryptopay.faults(stale_request_date={"count": 1, "age_s": 600})
    first = _paid_invoice(cryptopay)
    _paid_invoice(cryptopay)

    received = receiver.wait_for(2)

    stale, fresh = (datetime.fromisoformat(json.loads(r.body)["request_date"]).timestamp() for r in received)
    paid_at = datetime.fromisoformat(str(first["paid_at"])).timestamp()
    assert stale <= paid_at - 599 and fresh >= paid_at
    assert all(verified(r) for r in received)  # stale, yet correctly signed


# --- failed deliveries ---


def test_failed_deliveries_are_retried_each_with_a_fresh_date_and_signature(
    cryptopay: CryptoPay, receiver: Receiver
) -> None:
    receiver.statuses = [500, 503]
    cryptopay.webhook(receiver.url, retries=2, retry_interval_ms=50)
    _paid_invoice(cryptopay)

    received = receiver.wait_for(3)
    entries = cryptopay.settled_deliveries(3)

    assert [(e["attempt"], e["status"]) for e in entries] == [(1, 500), (2, 503), (3, 200)]
    assert all(verified(r) for r in received)
    assert len({json.loads(r.body)["update_id"] for r in received}) == 1


def test_retries_stop_after_the_configured_number(cryptopay: CryptoPay, receiver: Receiver) -> None:
    receiver.statuses = [500, 500, 500]
    cryptopay.webhook(receiver.url, retries=1, retry_interval_ms=0)
    _paid_invoice(cryptopay)

    entries = cryptopay.settled_deliveries(2)

    assert [(e["attempt"], e["status"]) for e in entries] == [(1, 500), (2, 500)]
    assert len(receiver.received) == 2


def test_an_unreachable_webhook_is_logged_as_an_error(cryptopay: CryptoPay) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cryptopay.webhook(f"http://127.0.0.1:{port}/hook", timeout_s=2)
    _paid_invoice(cryptopay)

    (entry,) = cryptopay.settled_deliveries(1)

    assert entry["status"] == "error" and "ConnectionRefusedError" in entry["error"]
