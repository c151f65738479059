"""POST /webhooks/cryptobot: forged, replayed, stale, oversized, altered and mistyped requests are
answered with the right status, logged, and enqueue nothing; a genuine one is logged and enqueued
once however often it is delivered. The app runs over PostgreSQL with the product's middleware on a
StubBroker (whose queue the tests read); the last test has the sandbox Crypto Pay deliver to a real
``worker-app serve`` on RabbitMQ."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from dramatiq.brokers.stub import StubBroker
from flask.testing import FlaskClient

from tests.fixtures.api import serving
from tests.fixtures.cryptobot import TOKEN, CryptoPay, signature_of
from tests.fixtures.notifications import MakeRuntime
from tests.fixtures.scheduler import queued_messages
from tests.fixtures.worker import wait_for
from tests.payments.test_activation import new_payment
from worker_app.clients.cryptobot import CryptoPayClient

PATH = "/webhooks/cryptobot"


@pytest.fixture
def client(make_runtime: MakeRuntime, stub_broker: StubBroker, clean_tables: sa.Engine) -> FlaskClient:
    from worker_app.web.api import create_app

    runtime = make_runtime(CRYPTOBOT_TOKEN=TOKEN, WEBHOOK_MAX_BODY_BYTES="4096", API_TOKEN="api-secret-123")
    return create_app(runtime, stub_broker).test_client()


def body(invoice_id: int, payment_id: uuid.UUID | str, *, age_s: float = 0, update_type: str = "invoice_paid",
         amount: str = "5.00") -> bytes:  # fmt: skip
    sent = (
        (datetime.now(UTC) - timedelta(seconds=age_s))
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )
    invoice = {"invoice_id": invoice_id, "hash": "IVabc", "status": "paid", "currency_type": "crypto",
               "asset": "USDT", "amount": amount, "paid_asset": "USDT", "paid_amount": amount,
               "paid_at": sent, "created_at": sent, "bot_invoice_url": "https://t.me/CryptoBot?start=IVabc",
               "mini_app_invoice_url": "", "web_app_invoice_url": "", "allow_comments": True,
               "allow_anonymous": True, "payload": str(payment_id),
               "description": "Pro — 30 дней"}  # fmt: skip
    update = {"update_id": 7, "update_type": update_type, "request_date": sent, "payload": invoice}
    return json.dumps(update, separators=(",", ":"), ensure_ascii=False).encode()


def post(
    client: FlaskClient,
    raw: bytes,
    *,
    signature: str | None = None,
    content_type: str = "application/json;charset=utf-8",
) -> Any:
    headers = {"crypto-pay-api-signature": signature if signature is not None else signature_of(TOKEN, raw)}
    return client.post(PATH, data=raw, headers=headers, content_type=content_type)


def logs(engine: sa.Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(sa.text(
            "SELECT event_type, external_id, is_valid, attempts, error_message, payload FROM webhook_logs "
            "ORDER BY created_at")))  # fmt: skip


def enqueued(broker: StubBroker) -> list[Any]:
    return list(broker.queues["payments"].queue) if "payments" in broker.queues else []


def test_a_genuine_webhook_is_logged_and_enqueued_once_however_often_it_comes(
    client: FlaskClient, stub_broker: StubBroker, clean_tables: sa.Engine
) -> None:
    # Given a pending payment
    payment_id = new_payment(clean_tables, 42)
    # When its webhook arrives three times (each a fresh delivery, as Crypto Pay redelivers)
    answers = [post(client, body(1001, payment_id)) for _ in range(3)]
    # Then all three are answered 200, all logged, one enqueued
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert answers[0].get_json() == {"ok": True}
    assert answers[1].get_json()["ignored"] == "duplicate: this invoice was enqueued already"
    rows = logs(clean_tables)
    assert [(r.event_type, r.external_id, r.is_valid, r.attempts) for r in rows] == [
        ("invoice_paid", "1001", True, 1), ("invoice_paid", "1001", True, 0),
        ("invoice_paid", "1001", True, 0),
    ]  # fmt: skip
    assert rows[0].payload["payload"]["description"] == "Pro — 30 дней"
    [message] = enqueued(stub_broker)
    decoded = json.loads(message)
    assert decoded["actor_name"] == "process_payment_completion"
    assert decoded["args"][0] == str(payment_id) and decoded["args"][2] == "cryptobot"
    assert decoded["args"][1]["invoice_id"] == 1001


@pytest.mark.parametrize(
    ("case", "status", "reason"),
    [
        ("no signature", 401, "crypto-pay-api-signature missing"),
        ("forged signature", 401, "does not sign this body"),
        ("signed with another token", 401, "does not sign this body"),
        ("one byte altered", 401, "does not sign this body"),
        ("stale", 401, "stale"),
        ("from the future", 401, "stale"),
        ("oversized", 413, "WEBHOOK_MAX_BODY_BYTES"),
        ("wrong content type", 415, "expected application/json"),
        ("not json", 400, "not a Crypto Pay webhook body"),
        ("no invoice", 400, "not a Crypto Pay webhook body"),
    ],
)
def test_a_bad_request_is_refused_logged_and_enqueues_nothing(
    client: FlaskClient, stub_broker: StubBroker, clean_tables: sa.Engine, case: str, status: int, reason: str
) -> None:
    payment_id = new_payment(clean_tables, 42)
    raw = body(1002, payment_id)
    if case == "no signature":
        answer = client.post(PATH, data=raw, content_type="application/json")
    elif case == "forged signature":
        answer = post(client, raw, signature="0" * 64)
    elif case == "signed with another token":
        answer = post(client, raw, signature=signature_of("123:other-app-token", raw))
    elif case == "one byte altered":
        answer = post(client, raw.replace(b'"5.00"', b'"6.00"'), signature=signature_of(TOKEN, raw))
    elif case == "stale":
        answer = post(client, body(1002, payment_id, age_s=3600))
    elif case == "from the future":
        answer = post(client, body(1002, payment_id, age_s=-3600))
    elif case == "oversized":
        answer = post(client, raw + b" " * 5000)
    elif case == "wrong content type":
        answer = post(client, raw, content_type="text/plain")
    elif case == "not json":
        answer = post(client, b"{not json")
    else:
        answer = post(client, b'{"update_type": "invoice_paid", "request_date": "2026-01-01T00:00:00Z"}')
    assert answer.status_code == status and reason in answer.get_json()["error"]
    [logged] = logs(clean_tables)
    assert logged.is_valid is False and reason in logged.error_message and logged.attempts == 0
    assert enqueued(stub_broker) == []


def test_a_non_ascii_signature_header_is_a_401_not_a_crash(
    client: FlaskClient, clean_tables: sa.Engine
) -> None:
    raw = body(1003, uuid.uuid4())
    answer = client.post(PATH, data=raw, content_type="application/json",
                         headers={"crypto-pay-api-signature": "é" * 64})  # fmt: skip
    assert answer.status_code == 401


def test_an_unknown_invoice_and_another_update_type_are_logged_and_not_enqueued(
    client: FlaskClient, stub_broker: StubBroker, clean_tables: sa.Engine
) -> None:
    unknown = post(client, body(2001, uuid.uuid4()))
    assert unknown.status_code == 200 and unknown.get_json()["ignored"] == "unknown invoice: no such payment"
    other = post(client, body(2002, uuid.uuid4(), update_type="invoice_expired"))
    assert other.status_code == 200 and other.get_json()["ignored"] == "invoice_expired"
    assert [(r.is_valid, r.error_message) for r in logs(clean_tables)] == [
        (True, "unknown invoice: no such payment"), (True, "update_type 'invoice_expired' ignored"),
    ]  # fmt: skip
    assert enqueued(stub_broker) == []


def test_the_webhook_needs_no_api_token_and_the_api_still_does(client: FlaskClient) -> None:
    assert client.get("/api/v1/queues").status_code == 401
    assert post(client, b"{}", signature="x").status_code == 401  # refused by signature, not by API_TOKEN
    wrong_method = client.get(PATH)
    assert wrong_method.status_code == 405 and wrong_method.get_json()["error"].startswith("405")


@pytest.mark.rabbitmq
def test_the_sandbox_delivers_a_paid_invoice_to_worker_app_serve_which_enqueues_it_once(
    rabbitmq_vhost: str, tmp_path: Path, cryptopay: CryptoPay, cryptobot: CryptoPayClient,
    clean_tables: sa.Engine, redis_client: Any,
) -> None:  # fmt: skip
    from tests.fixtures.scheduler import purge_domain_queues

    payment_id = new_payment(clean_tables, 42)
    with serving(tmp_path / "serve.log", {"CRYPTOBOT_TOKEN": TOKEN}) as base:
        cryptopay.webhook(f"{base}{PATH}")
        cryptopay.faults(duplicate_delivery=2)
        invoice = cryptobot.create_invoice(Decimal("5.00"), asset="USDT", payload=str(payment_id))
        cryptopay.pay(invoice.invoice_id)
        deliveries = cryptopay.settled_deliveries(2)
    assert [d["status"] for d in deliveries] == [200, 200]
    messages = wait_for(lambda: queued_messages("payments"), 10, "the enqueued completion")
    assert [(m["actor_name"], m["args"][0]) for m in messages] == [
        ("process_payment_completion", str(payment_id))
    ]
    assert [r.attempts for r in logs(clean_tables)] == [1, 0]
    purge_domain_queues()
