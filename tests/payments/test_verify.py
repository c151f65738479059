"""verify_pending_payments on the real services: the sandbox Crypto Pay's invoices, the sandbox panel,
PostgreSQL. A paid invoice whose webhook was lost is completed by one run; an expired one fails its
payment and tells the user once; the ids go to getInvoices in calls of at most 1,000.
VERIFY_PENDING_PAYMENTS_BATCH_LIMIT caps the payments of one run, and the runs go round all of them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from actors.payments.activation import begin
from actors.payments.verify import RESUME_KEY, verify, verify_pending_payments
from tests.fixtures.cryptobot import TOKEN, CryptoPay
from tests.fixtures.notifications import MakeRuntime
from tests.fixtures.remnawave import Panel, user_spec
from tests.payments.test_activation import new_payment, parse, queued, row
from worker_app.clients.cryptobot import CryptoPayClient
from worker_app.runtime import Runtime

DAY = timedelta(hours=24)


def with_invoice(
    engine: sa.Engine, client: CryptoPayClient, user_id: int, **payment: Any
) -> tuple[uuid.UUID, int]:
    payment_id = new_payment(engine, user_id, **payment)
    invoice = client.create_invoice(Decimal("5.00"), asset="USDT", payload=str(payment_id))
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE payments SET external_id = :inv WHERE id = :id"),
                     {"inv": str(invoice.invoice_id), "id": payment_id})  # fmt: skip
    return payment_id, invoice.invoice_id


def run(runtime: Runtime, cryptobot: CryptoPayClient) -> dict[str, int]:
    return verify(runtime.database, cryptobot, runtime.remnawave, runtime.alerts, now=datetime.now(UTC),
                  max_age=DAY).counts  # fmt: skip


def test_a_paid_invoice_whose_webhook_was_lost_is_completed_by_one_run(
    panel: Panel,
    panel_runtime: Runtime,
    cryptopay: CryptoPay,
    cryptobot: CryptoPayClient,
    clean_tables: sa.Engine,
) -> None:
    [user_id] = panel.add_users(user_spec(expire_in=timedelta(days=2)))
    before = parse(panel.user(user_id)["expireAt"])
    paid, paid_invoice = with_invoice(clean_tables, cryptobot, user_id)
    waiting, _ = with_invoice(clean_tables, cryptobot, user_id)
    cryptopay.pay(paid_invoice)  # no webhook configured: it is lost
    assert run(panel_runtime, cryptobot) == {"paid": 1, "active": 1}
    assert run(panel_runtime, cryptobot) == {"active": 1}
    assert row(clean_tables, paid).status == "completed" and row(clean_tables, waiting).status == "pending"
    assert parse(panel.user(user_id)["expireAt"]) == before + timedelta(days=30)
    assert len(queued(clean_tables)) == 1


def test_an_expired_invoice_fails_its_payment_and_tells_the_user_once(
    panel: Panel,
    panel_runtime: Runtime,
    cryptopay: CryptoPay,
    cryptobot: CryptoPayClient,
    clean_tables: sa.Engine,
) -> None:
    [user_id] = panel.add_users(user_spec())
    payment_id, invoice_id = with_invoice(clean_tables, cryptobot, user_id)
    cryptopay.admin("POST", f"invoices/{invoice_id}/expire")
    assert run(panel_runtime, cryptobot) == {"expired": 1}
    assert run(panel_runtime, cryptobot) == {}
    status, *_ = row(clean_tables, payment_id)
    assert status == "failed"
    [(chat, text)] = queued(clean_tables)
    assert chat == 4242 and text.startswith("⌛ Your CyberVPN payment was not completed in time")


def test_a_payment_pending_longer_than_the_window_is_failed(
    panel: Panel, panel_runtime: Runtime, cryptobot: CryptoPayClient, clean_tables: sa.Engine
) -> None:
    [user_id] = panel.add_users(user_spec())
    payment_id, _ = with_invoice(clean_tables, cryptobot, user_id)
    with clean_tables.begin() as conn:
        conn.execute(sa.text("UPDATE payments SET created_at = now() - interval '25 hours' WHERE id = :id"),
                     {"id": payment_id})  # fmt: skip
    assert run(panel_runtime, cryptobot) == {"too_old": 1}
    with clean_tables.connect() as conn:
        error = conn.execute(sa.text("SELECT error_message FROM payments WHERE id = :id"), {"id": payment_id})
        assert error.scalar_one() == "still pending after 24 h"


def test_a_panel_outage_leaves_the_payment_to_the_next_run_which_extends_once(
    panel: Panel,
    panel_runtime: Runtime,
    cryptopay: CryptoPay,
    cryptobot: CryptoPayClient,
    clean_tables: sa.Engine,
) -> None:
    [user_id] = panel.add_users(user_spec(expire_in=timedelta(days=2)))
    before = parse(panel.user(user_id)["expireAt"])
    payment_id, invoice_id = with_invoice(clean_tables, cryptobot, user_id)
    cryptopay.pay(invoice_id)
    # the webhook path stored the plan, then the panel went down before it was applied
    [invoice] = cryptobot.get_invoices([invoice_id])
    begin(panel_runtime.database, panel_runtime.remnawave, payment_id, invoice, source="webhook",
          now=datetime.now(UTC))  # fmt: skip
    panel.faults(server_error={"count": 1000, "status": 503})
    assert run(panel_runtime, cryptobot) == {"error": 1}
    assert row(clean_tables, payment_id).status == "pending"
    panel.faults(server_error=None)
    panel_runtime.remnawave.breaker.record_success()
    assert run(panel_runtime, cryptobot) == {"paid": 1}
    assert parse(panel.user(user_id)["expireAt"]) == before + timedelta(days=30)


def test_fifteen_hundred_pending_payments_cost_two_get_invoices_calls(
    panel: Panel,
    panel_runtime: Runtime,
    cryptopay: CryptoPay,
    cryptobot: CryptoPayClient,
    clean_tables: sa.Engine,
) -> None:
    created = cryptopay.admin(
        "POST", "invoices", {"count": 1500, "invoice": {"asset": "USDT", "amount": "5.00"}}
    )
    ids = list(range(created["first_id"], created["last_id"] + 1))
    with clean_tables.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO payments (user_id, amount, currency, subscription_days, external_id) "
                    "SELECT 1, 5, 'USDT', 30, unnest(CAST(:ids AS text[]))"), {"ids": [str(i) for i in ids]},
        )  # fmt: skip
    before = len(cryptopay.calls("getInvoices"))
    assert run(panel_runtime, cryptobot) == {"active": 1500}
    assert len(cryptopay.calls("getInvoices")) - before == 2


def asked(cryptopay: CryptoPay) -> list[list[int]]:
    """The invoice ids of each getInvoices call so far."""
    return [sorted(map(int, c["params"]["invoice_ids"].split(","))) for c in cryptopay.calls("getInvoices")]


def test_a_batch_limit_checks_that_many_payments_a_run_and_the_runs_go_round_all_of_them(
    make_runtime: MakeRuntime, cryptopay: CryptoPay, cryptobot: CryptoPayClient, clean_tables: sa.Engine,
    redis_client: Any,
) -> None:  # fmt: skip
    # Given five pending payments whose invoices stay unpaid, and VERIFY_PENDING_PAYMENTS_BATCH_LIMIT=3
    make_runtime(CRYPTOBOT_API_URL=cryptopay.url, CRYPTOBOT_TOKEN=TOKEN,
                 VERIFY_PENDING_PAYMENTS_BATCH_LIMIT="3")  # fmt: skip
    invoices = [with_invoice(clean_tables, cryptobot, 42)[1] for _ in range(5)]
    # When the job runs three times
    runs = [verify_pending_payments() for _ in range(3)]
    # Then the first checks the three oldest and says it stopped at its limit, the second the other
    # two (not the three still pending again), and the third starts over
    assert asked(cryptopay) == [invoices[:3], invoices[3:], invoices[:3]]
    assert [(r["counts"], r["batch_limit"], r["limited"]) for r in runs] == [
        ({"active": 3}, 3, True), ({"active": 2}, 3, False), ({"active": 3}, 3, True),
    ]  # fmt: skip
    assert redis_client.ttl(RESUME_KEY) > 23 * 3600


def test_a_batch_limit_fails_that_many_too_old_payments_a_run_and_the_next_run_the_rest(
    runtime: Runtime, cryptobot: CryptoPayClient, clean_tables: sa.Engine
) -> None:
    payments = [with_invoice(clean_tables, cryptobot, 42)[0] for _ in range(4)]
    with clean_tables.begin() as conn:
        conn.execute(sa.text("UPDATE payments SET created_at = now() - interval '25 hours'"))

    def run() -> tuple[dict[str, int], bool]:
        report = verify(runtime.database, cryptobot, runtime.remnawave, runtime.alerts, now=datetime.now(UTC),
                        max_age=DAY, limit=3)  # fmt: skip
        return report.counts, report.limited

    assert [run(), run(), run()] == [({"too_old": 3}, True), ({"too_old": 1}, False), ({}, False)]
    assert {row(clean_tables, p).status for p in payments} == {"failed"}
    assert len(queued(clean_tables)) == 4
