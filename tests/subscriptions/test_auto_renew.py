"""auto_renew_subscriptions on the real services: preferences and payments in PostgreSQL, expiries from
the sandbox panel, invoices in the sandbox Crypto Pay. One invoice and one message per period, the
payment row first; paid, it renews the user through the payments domain. AUTO_RENEW_SUBSCRIPTIONS_BATCH_LIMIT
caps the invoices of one run."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from actors.payments.completion import activate
from actors.subscriptions.auto_renew import auto_renew, payment_id_for
from actors.subscriptions.report import RunReport
from tests.fixtures.cryptobot import CryptoPay
from tests.fixtures.remnawave import Panel, user_spec
from tests.payments.test_activation import parse
from worker_app.clients.cryptobot import CryptoPayClient
from worker_app.runtime import Runtime

RENEW_URL = "https://t.me/cybervpn_bot"


def plan(engine: sa.Engine, *, price: str = "4.50", currency: str = "USDT", days: int = 30) -> uuid.UUID:
    plan_id = uuid.uuid4()
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO subscription_plans (id, name, duration_days, price, currency) "
                             "VALUES (:id, :name, :days, :price, :currency)"),
                     {"id": plan_id, "name": f"Pro-{plan_id.hex[:6]}", "days": days, "price": Decimal(price),
                      "currency": currency})  # fmt: skip
    return plan_id


def prefer(
    engine: sa.Engine, user_id: int, plan_id: uuid.UUID, *, enabled: bool = True, telegram_id: int = 5
) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO auto_renew_settings (user_id, telegram_id, plan_id, enabled) "
                             "VALUES (:u, :t, :p, :e)"),
                     {"u": user_id, "t": telegram_id, "p": plan_id, "e": enabled})  # fmt: skip


def run(runtime: Runtime, cryptobot: CryptoPayClient) -> dict[str, int]:
    return dict(run_report(runtime, cryptobot).counts)


def run_report(runtime: Runtime, cryptobot: CryptoPayClient, limit: int | None = None) -> RunReport:
    report = RunReport("auto_renew_subscriptions")
    auto_renew(runtime.database, runtime.remnawave, cryptobot, report, now=datetime.now(UTC),
               window=timedelta(hours=1), invoice_expires_s=3600, renew_url=RENEW_URL,
               limit=limit)  # fmt: skip
    return report


def rows(engine: sa.Engine, sql: str) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(sa.text(sql)))


def test_one_invoice_and_one_message_per_period_and_paying_it_renews(
    panel: Panel,
    panel_runtime: Runtime,
    cryptopay: CryptoPay,
    cryptobot: CryptoPayClient,
    clean_tables: sa.Engine,
) -> None:
    # Given a user ending in 30 minutes, one ending in 5 hours, one with auto-renew off
    due, later, off = panel.add_users(user_spec(expire_in=timedelta(minutes=30)),
                                      user_spec(expire_in=timedelta(hours=5)),
                                      user_spec(expire_in=timedelta(minutes=10)))  # fmt: skip
    pro = plan(clean_tables)
    for user_id in (due, later):
        prefer(clean_tables, user_id, pro)
    prefer(clean_tables, off, pro, enabled=False)
    # When the job runs twice in the period
    assert run(panel_runtime, cryptobot) == {"queued": 1, "not_due": 1}
    assert run(panel_runtime, cryptobot) == {"already_handled": 1, "not_due": 1}
    # Then one payment (its id from the user and the expiry), one invoice carrying it, one message
    expire_at = parse(panel.user(due)["expireAt"])
    columns = "id, user_id, amount, currency, subscription_days, external_id, status"
    [payment] = rows(clean_tables, f"SELECT {columns} FROM payments")
    assert payment.id == payment_id_for(due, expire_at)
    assert (payment.user_id, payment.amount, payment.currency, payment.subscription_days, payment.status) == (
        due,
        Decimal("4.5"),
        "USDT",
        30,
        "pending",
    )
    [invoice] = cryptobot.get_invoices([int(payment.external_id)])
    assert (invoice.payload, invoice.amount, invoice.asset) == (str(payment.id), Decimal("4.50"), "USDT")
    assert invoice.raw["paid_btn_url"] == RENEW_URL
    [message] = rows(clean_tables, "SELECT telegram_id, message, notification_type FROM notification_queue")
    assert message.telegram_id == 5 and message.notification_type == "auto_renew_invoice"
    assert invoice.bot_invoice_url in message.message and "4.5 USDT" in message.message
    assert len(cryptopay.calls("createInvoice")) == 1
    # And paid, it renews the user by the plan's days, from the old expiry
    cryptopay.pay(invoice.invoice_id)
    [paid] = cryptobot.get_invoices([invoice.invoice_id])
    assert activate(panel_runtime.database, panel_runtime.remnawave, panel_runtime.alerts, payment.id, paid,
                    source="poller") == "completed"  # fmt: skip
    assert parse(panel.user(due)["expireAt"]) == expire_at + timedelta(days=30)


def test_a_fiat_plan_makes_a_fiat_invoice(
    panel: Panel, panel_runtime: Runtime, cryptobot: CryptoPayClient, clean_tables: sa.Engine
) -> None:
    [user_id] = panel.add_users(user_spec(expire_in=timedelta(minutes=20)))
    prefer(clean_tables, user_id, plan(clean_tables, price="3.99", currency="USD"))
    assert run(panel_runtime, cryptobot) == {"queued": 1}
    [payment] = rows(clean_tables, "SELECT external_id FROM payments")
    [invoice] = cryptobot.get_invoices([int(payment.external_id)])
    assert (invoice.currency_type, invoice.fiat, invoice.amount) == ("fiat", "USD", Decimal("3.99"))


def test_a_crash_after_create_invoice_makes_a_second_invoice_either_of_which_activates_once(
    panel: Panel,
    panel_runtime: Runtime,
    cryptopay: CryptoPay,
    cryptobot: CryptoPayClient,
    clean_tables: sa.Engine,
) -> None:
    # Given a run that created its payment row and its invoice, then died before recording the invoice
    [user_id] = panel.add_users(user_spec(expire_in=timedelta(minutes=30)))
    before = parse(panel.user(user_id)["expireAt"])
    pro = plan(clean_tables)
    prefer(clean_tables, user_id, pro)
    payment_id = payment_id_for(user_id, before)
    with clean_tables.begin() as conn:
        conn.execute(sa.text("INSERT INTO payments (id, user_id, telegram_id, plan_id, amount, currency, "
                             "subscription_days) VALUES (:id, :u, 5, :p, 4.5, 'USDT', 30)"),
                     {"id": payment_id, "u": user_id, "p": pro})  # fmt: skip
    orphan = cryptobot.create_invoice(Decimal("4.50"), asset="USDT", payload=str(payment_id))
    # When the next run comes, Then it makes and records a second invoice
    assert run(panel_runtime, cryptobot) == {"queued": 1}
    [recorded] = rows(clean_tables, "SELECT external_id FROM payments")
    assert recorded.external_id != str(orphan.invoice_id)
    # And the user paying the orphan (its link was never sent, but say it was) still renews once
    cryptopay.pay(orphan.invoice_id)
    [paid] = cryptobot.get_invoices([orphan.invoice_id])
    rt = panel_runtime
    outcomes = [activate(rt.database, rt.remnawave, rt.alerts, payment_id, paid, source="webhook")
                for _ in range(2)]  # fmt: skip
    assert outcomes == ["completed", "already_completed"]
    assert parse(panel.user(user_id)["expireAt"]) == before + timedelta(days=30)


def test_a_batch_limit_makes_that_many_invoices_a_run_and_the_next_run_the_rest(
    panel: Panel,
    panel_runtime: Runtime,
    cryptopay: CryptoPay,
    cryptobot: CryptoPayClient,
    clean_tables: sa.Engine,
) -> None:
    # Given five users with auto-renew ending in 30 minutes, and a limit of 3 invoices a run
    users = panel.add_users(*[user_spec(expire_in=timedelta(minutes=30)) for _ in range(5)])
    pro = plan(clean_tables)
    for user_id in users:
        prefer(clean_tables, user_id, pro)
    # When the job runs
    first = run_report(panel_runtime, cryptobot, limit=3)
    # Then it invoices three, writes no payment for the others, and says it stopped at its limit
    assert (dict(first.counts), first.details) == ({"queued": 3}, {"batch_limit": 3, "limited": True})
    assert len(rows(clean_tables, "SELECT id FROM payments")) == 3
    # And the next run invoices the other two; one invoice and one message per user in all
    second = run_report(panel_runtime, cryptobot, limit=3)
    assert dict(second.counts) == {"already_handled": 3, "queued": 2}
    assert second.details == {"batch_limit": 3, "limited": False}
    assert sorted(r.user_id for r in rows(clean_tables, "SELECT user_id FROM payments")) == sorted(users)
    assert len(cryptopay.calls("createInvoice")) == 5
    assert len(rows(clean_tables, "SELECT id FROM notification_queue")) == 5
