"""Activation exactly once, on the real services: PostgreSQL (payments, payment_activations), the
sandbox panel (the user's expireAt) and the sandbox Crypto Pay (a real paid invoice read back by the
client). Each step is repeated the way a redelivered message repeats it; the webhook path and the
poller race on the same payments from threads."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from actors.payments.activation import apply, begin, finish
from actors.payments.completion import activate, process_payment_completion
from sandbox.server import RunningSandbox
from tests.fixtures.cryptobot import CryptoPay
from tests.fixtures.notifications import admin_messages
from tests.fixtures.remnawave import Panel, user_spec
from worker_app.clients.cryptobot import CryptoPayClient, Invoice
from worker_app.clients.remnawave import RemnawaveClient
from worker_app.errors import PermanentError
from worker_app.runtime import Runtime


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def new_payment(engine: sa.Engine, user_id: int, *, amount: str = "5.00", currency: str = "USDT",
                days: int | None = 30, telegram_id: int | None = 4242) -> uuid.UUID:  # fmt: skip
    payment_id = uuid.uuid4()
    with engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO payments (id, user_id, telegram_id, amount, currency, subscription_days) "
                    "VALUES (:id, :user, :tg, :amount, :currency, :days)"),
            {"id": payment_id, "user": user_id, "tg": telegram_id, "amount": Decimal(amount),
             "currency": currency, "days": days},
        )  # fmt: skip
    return payment_id


def paid_invoice(cryptopay: CryptoPay, client: CryptoPayClient, payment_id: uuid.UUID, *,
                 amount: str = "5.00", asset: str = "USDT", **pay: Any) -> Invoice:  # fmt: skip
    invoice = client.create_invoice(Decimal(amount), asset=asset, payload=str(payment_id))
    cryptopay.pay(invoice.invoice_id, **pay)
    [read] = client.get_invoices([invoice.invoice_id])
    return read


def row(engine: sa.Engine, payment_id: uuid.UUID) -> Any:
    with engine.connect() as conn:
        return conn.execute(
            sa.text("SELECT p.status, p.paid_at, p.external_id, p.error_message, a.state, a.new_expire_at, "
                    "a.reason FROM payments p LEFT JOIN payment_activations a ON a.payment_id = p.id "
                    "WHERE p.id = :id"), {"id": payment_id},
        ).one()  # fmt: skip


def queued(engine: sa.Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(sa.text("SELECT telegram_id, message FROM notification_queue")))


@pytest.fixture
def world(panel: Panel, panel_runtime: Runtime, cryptopay: CryptoPay, cryptobot: CryptoPayClient,
          clean_tables: sa.Engine) -> dict[str, Any]:  # fmt: skip
    return {"panel": panel, "runtime": panel_runtime, "cryptopay": cryptopay, "client": cryptobot,
            "db": clean_tables}  # fmt: skip


def test_every_step_repeated_still_extends_the_user_once(world: dict[str, Any]) -> None:
    panel, runtime, db = world["panel"], world["runtime"], world["db"]
    remnawave: RemnawaveClient = runtime.remnawave
    # Given a user with 10 days left and a paid 30-day payment
    [user_id] = panel.add_users(user_spec(expire_in=timedelta(days=10)))
    before = parse(panel.user(user_id)["expireAt"])
    payment_id = new_payment(db, user_id)
    invoice = paid_invoice(world["cryptopay"], world["client"], payment_id)
    now = datetime.now(UTC)
    # When every step runs twice, as a redelivered message would run them
    first = begin(runtime.database, remnawave, payment_id, invoice, source="webhook", now=now)
    again = begin(
        runtime.database, remnawave, payment_id, invoice, source="poller", now=now + timedelta(hours=1)
    )
    assert first.plan is not None and again.plan == first.plan  # computed once, stored
    for _ in range(2):
        apply(remnawave, runtime.database, first.plan)
    completed = [finish(runtime.database, first.plan, invoice, "paid!") for _ in range(2)]
    # Then the user has exactly 30 more days, the payment is completed once, the user told once
    assert parse(panel.user(user_id)["expireAt"]) == before + timedelta(days=30)
    assert completed == [True, False]
    status, paid_at, external_id, _, state, new_expire_at, _ = row(db, payment_id)
    assert (status, state, external_id) == ("completed", "completed", str(invoice.invoice_id))
    assert paid_at == invoice.paid_at and new_expire_at == before + timedelta(days=30)
    assert queued(db) == [(4242, "paid!")]
    later = begin(runtime.database, remnawave, payment_id, invoice, source="poller", now=now)
    assert later.outcome == "completed"


def test_an_expired_user_is_brought_back_from_now(world: dict[str, Any]) -> None:
    panel, runtime, db = world["panel"], world["runtime"], world["db"]
    [user_id] = panel.add_users(user_spec(status="EXPIRED", expire_in=-timedelta(days=3)))
    payment_id = new_payment(db, user_id, days=7)
    invoice = paid_invoice(world["cryptopay"], world["client"], payment_id)
    started = datetime.now(UTC).replace(microsecond=0)  # the panel keeps milliseconds
    outcome = activate(
        runtime.database, runtime.remnawave, runtime.alerts, payment_id, invoice, source="webhook"
    )
    user = panel.user(user_id)
    assert outcome == "completed" and user["status"] == "ACTIVE"
    assert started + timedelta(days=7) <= parse(user["expireAt"]) <= datetime.now(UTC) + timedelta(days=7)
    [(_, text)] = queued(db)
    assert text.startswith("✅ Payment of 5 USDT received") and "extended by 7 days" in text


@pytest.mark.parametrize(
    ("payment", "pay", "why"),
    [
        ({"amount": "9.00"}, {}, "is for 5, the payment for 9"),
        ({"currency": "TON"}, {}, "is in USDT, the payment in TON"),
        ({}, {"paid_amount": "1.5"}, "was paid 1.5 USDT"),
        ({"days": None}, {}, "no subscription_days"),
    ],
)
def test_a_mismatched_invoice_is_never_activated_and_alerted_once(
    world: dict[str, Any], sandbox: RunningSandbox, payment: dict[str, Any], pay: dict[str, Any], why: str
) -> None:
    panel, runtime, db = world["panel"], world["runtime"], world["db"]
    [user_id] = panel.add_users(user_spec(expire_in=timedelta(days=10)))
    before = panel.user(user_id)["expireAt"]
    payment_id = new_payment(db, user_id, **payment)
    invoice = paid_invoice(world["cryptopay"], world["client"], payment_id, **pay)
    outcomes = [activate(runtime.database, runtime.remnawave, runtime.alerts, payment_id, invoice,
                         source="webhook") for _ in range(2)]  # fmt: skip
    assert outcomes == ["review", "review"]
    status, _, _, error, state, _, reason = row(db, payment_id)
    assert (status, state) == ("pending", "review") and why in reason and why in error
    assert panel.user(user_id)["expireAt"] == before and queued(db) == []
    [alert] = admin_messages(runtime, sandbox)
    assert (
        alert.startswith(f"[CRITICAL] payment {payment_id} NOT activated, marked for review") and why in alert
    )


def test_an_invoice_not_paid_or_of_another_payment_is_refused(world: dict[str, Any]) -> None:
    panel, runtime, db = world["panel"], world["runtime"], world["db"]
    [user_id] = panel.add_users(user_spec())
    payment_id, other = new_payment(db, user_id), new_payment(db, user_id)
    unpaid = world["client"].create_invoice(Decimal("5.00"), asset="USDT", payload=str(payment_id))
    refused = begin(
        runtime.database, runtime.remnawave, payment_id, unpaid, source="poller", now=datetime.now(UTC)
    )
    assert refused.reason == f"invoice {unpaid.invoice_id} is active, not paid"
    foreign = paid_invoice(world["cryptopay"], world["client"], other)
    with pytest.raises(PermanentError, match="no payment"):
        begin(
            runtime.database, runtime.remnawave, uuid.uuid4(), foreign, source="poller", now=datetime.now(UTC)
        )


def test_the_webhook_and_the_poller_racing_on_fifty_payments_complete_each_once(
    world: dict[str, Any],
) -> None:
    panel, runtime, db = world["panel"], world["runtime"], world["db"]
    users = panel.add_users(*[user_spec(expire_in=timedelta(days=5), telegram_id=900 + n) for n in range(50)])
    before = {u: parse(panel.user(u)["expireAt"]) for u in users}
    payments = [(u, new_payment(db, u, telegram_id=900 + n)) for n, u in enumerate(users)]
    invoices = {p: paid_invoice(world["cryptopay"], world["client"], p) for _, p in payments}
    outcomes: list[str] = []
    errors: list[BaseException] = []

    def path(source: str) -> None:
        try:
            for _, payment_id in payments:
                outcomes.append(activate(runtime.database, runtime.remnawave, runtime.alerts, payment_id,
                                         invoices[payment_id], source=source))  # fmt: skip
        except BaseException as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=path, args=(source,)) for source in ("webhook", "poller")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    assert sorted(outcomes).count("completed") == 50 and outcomes.count("already_completed") == 50
    for user_id in users:
        assert parse(panel.user(user_id)["expireAt"]) == before[user_id] + timedelta(days=30)
    assert len(queued(db)) == 50


def test_the_actor_refuses_bad_arguments(world: dict[str, Any]) -> None:
    with pytest.raises(PermanentError, match="unknown payment provider 'stripe'"):
        process_payment_completion(str(uuid.uuid4()), {}, "stripe")
    with pytest.raises(PermanentError, match="is not a uuid"):
        process_payment_completion("42", {}, "cryptobot")
    with pytest.raises(PermanentError, match="invoice_data is not a Crypto Pay invoice"):
        process_payment_completion(str(uuid.uuid4()), {"invoice_id": 1}, "cryptobot")


def test_worker_app_payments_unactivated_lists_what_was_paid_and_not_activated(world: dict[str, Any]) -> None:
    import os
    import subprocess

    from tests.fixtures.api import WORKER_APP

    panel, runtime, db = world["panel"], world["runtime"], world["db"]
    [user_id] = panel.add_users(user_spec())

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([WORKER_APP, "payments", "unactivated", *args], env=os.environ,
                              capture_output=True, text=True, check=False)  # fmt: skip

    empty = cli()
    assert empty.returncode == 0 and empty.stdout == "" and "0 paid payment(s) not activated" in empty.stderr
    stuck = new_payment(db, user_id)
    invoice = paid_invoice(world["cryptopay"], world["client"], stuck)
    begin(runtime.database, runtime.remnawave, stuck, invoice, source="webhook", now=datetime.now(UTC))
    wrong = new_payment(db, user_id, amount="9.00")
    activate(runtime.database, runtime.remnawave, runtime.alerts, wrong,
             paid_invoice(world["cryptopay"], world["client"], wrong), source="webhook")  # fmt: skip
    listed = cli()
    assert listed.returncode == 1 and "2 paid payment(s) not activated" in listed.stderr
    first, second = listed.stdout.splitlines()
    assert "ACTIVATING" in first and str(stuck) in first and "to " in first
    assert "REVIEW" in second and str(wrong) in second and "is for 5, the payment for 9" in second
    as_json = [json.loads(line) for line in cli("--json").stdout.splitlines()]
    assert [(j["payment_id"], j["state"]) for j in as_json] == [
        (str(stuck), "activating"),
        (str(wrong), "review"),
    ]


def test_a_user_the_panel_no_longer_has_sends_the_paid_payment_to_review_not_to_failed(
    world: dict[str, Any], sandbox: RunningSandbox
) -> None:
    from actors.payments.verify import verify

    panel, runtime, db = world["panel"], world["runtime"], world["db"]
    # A user deleted from the panel before the payment began, and one deleted between begin and apply
    [gone_before, gone_between] = panel.add_users(user_spec(), user_spec())
    first, second = new_payment(db, gone_before), new_payment(db, gone_between)
    first_invoice = paid_invoice(world["cryptopay"], world["client"], first)
    second_invoice = paid_invoice(world["cryptopay"], world["client"], second)
    runtime.remnawave.call("DELETE", f"/api/users/{gone_before}")
    begun = begin(runtime.database, runtime.remnawave, second, second_invoice, source="webhook",
                  now=datetime.now(UTC))  # fmt: skip
    assert begun.outcome == "activating"
    runtime.remnawave.call("DELETE", f"/api/users/{gone_between}")

    for payment_id, invoice in ((first, first_invoice), (second, second_invoice)):
        outcomes = [activate(runtime.database, runtime.remnawave, runtime.alerts, payment_id, invoice,
                             source="webhook") for _ in range(2)]  # fmt: skip
        assert outcomes == ["review", "review"]
        status, _, _, error, state, _, reason = row(db, payment_id)
        assert (status, state) == ("pending", "review")
        assert reason.startswith("the panel refused the activation: ") and error == f"review: {reason}"
    alerts = admin_messages(runtime, sandbox)
    assert sorted(a.split(" NOT activated")[0] for a in alerts) == sorted(
        f"[CRITICAL] payment {p}" for p in (first, second)
    )
    # The poller, even a day later, neither fails them as unpaid nor tells the users so
    later = datetime.now(UTC) + timedelta(days=2)
    report = verify(runtime.database, world["client"], runtime.remnawave, runtime.alerts, now=later,
                    max_age=timedelta(hours=24))  # fmt: skip
    assert report.counts == {}
    assert [row(db, p).status for p in (first, second)] == ["pending", "pending"] and queued(db) == []
