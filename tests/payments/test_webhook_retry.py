"""retry_failed_webhooks over PostgreSQL: a genuine webhook recorded but not processed is enqueued again
(after it had time to finish), at most PAYMENTS_WEBHOOK_MAX_TRIES times in all, then alerted once;
process_payment_completion marks its webhooks processed. RETRY_FAILED_WEBHOOKS_BATCH_LIMIT caps the
webhooks of one run, the least tried first."""

from __future__ import annotations

import json
import time
import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import dramatiq
import sqlalchemy as sa
from dramatiq.brokers.stub import StubBroker

from actors.payments.completion import process_payment_completion
from actors.payments.webhook_retry import mark_processed, retry, retry_failed_webhooks
from sandbox.server import RunningSandbox
from tests.fixtures.cryptobot import CryptoPay
from tests.fixtures.notifications import MakeRuntime, admin_messages
from tests.fixtures.remnawave import Panel, user_spec
from tests.payments.test_activation import new_payment
from worker_app.clients.cryptobot import CryptoPayClient
from worker_app.rolling import RollingCounts
from worker_app.runtime import Runtime


def webhook(engine: sa.Engine, invoice_id: int, payment_id: uuid.UUID, *, age_min: int = 15,
            attempts: int = 0, error: str | None = None) -> uuid.UUID:  # fmt: skip
    update = {
        "update_type": "invoice_paid",
        "payload": {"invoice_id": invoice_id, "payload": str(payment_id)},
    }
    with engine.begin() as conn:
        return uuid.UUID(str(conn.execute(
            sa.text("INSERT INTO webhook_logs (source, event_type, external_id, payload, is_valid, attempts, "
                    "error_message, created_at) VALUES ('cryptobot', 'invoice_paid', :inv, "
                    "CAST(:payload AS jsonb), true, :attempts, :error, now() - CAST(:age AS interval)) "
                    "RETURNING id"),
            {"inv": str(invoice_id), "payload": json.dumps(update), "attempts": attempts, "error": error,
             "age": f"{age_min} minutes"},
        ).scalar_one()))  # fmt: skip


def state(engine: sa.Engine, log_id: uuid.UUID) -> Any:
    with engine.connect() as conn:
        query = "SELECT attempts, processed_at, error_message FROM webhook_logs WHERE id = :id"
        return conn.execute(sa.text(query), {"id": log_id}).one()


def test_an_unprocessed_webhook_is_enqueued_again_three_times_in_all_then_alerted_once(
    make_runtime: Any, clean_tables: sa.Engine, sandbox: RunningSandbox
) -> None:
    runtime = make_runtime()
    payment_id = new_payment(clean_tables, 42)
    log_id = webhook(clean_tables, 501, payment_id, attempts=1)  # the receiver enqueued it once
    webhook(clean_tables, 502, new_payment(clean_tables, 43), age_min=2)  # too young: maybe still running
    webhook(clean_tables, 503, payment_id, error="duplicate: this invoice was enqueued already")
    sent: list[tuple[str, Any, str]] = []

    def run() -> dict[str, int]:
        return retry(runtime.database, lambda *a: sent.append(a), runtime.alerts, max_tries=3,
                     retry_after=timedelta(minutes=10))  # fmt: skip

    assert [run() for _ in range(4)] == [{"enqueued": 1}, {"enqueued": 1}, {"gave_up": 1}, {}]
    assert [(p, invoice["invoice_id"], provider) for p, invoice, provider in sent] == [
        (str(payment_id), 501, "cryptobot"), (str(payment_id), 501, "cryptobot"),
    ]  # fmt: skip
    attempts, processed_at, error = state(clean_tables, log_id)
    assert (attempts, processed_at, error) == (3, None, "gave up: not processed after 3 tries")
    [alert] = admin_messages(runtime, sandbox)
    assert alert.startswith("[CRITICAL] Crypto Pay webhook for invoice 501: not processed after 3 tries")


def test_a_webhook_of_a_completed_payment_or_of_no_payment_is_not_enqueued(
    make_runtime: Any, clean_tables: sa.Engine, sandbox: RunningSandbox
) -> None:
    runtime = make_runtime()
    done = new_payment(clean_tables, 42)
    with clean_tables.begin() as conn:
        conn.execute(sa.text("UPDATE payments SET status = 'completed' WHERE id = :id"), {"id": done})
    completed_log, orphan_log = webhook(clean_tables, 601, done), webhook(clean_tables, 602, uuid.uuid4())
    sent: list[Any] = []
    counts = retry(runtime.database, lambda *a: sent.append(a), runtime.alerts, max_tries=3,
                   retry_after=timedelta(minutes=10))  # fmt: skip
    assert counts == {"already_completed": 1, "gave_up": 1} and sent == []
    assert state(clean_tables, completed_log).processed_at is not None
    assert state(clean_tables, orphan_log).error_message == "gave up: no such payment"
    [alert] = admin_messages(runtime, sandbox)
    assert "invoice 602: no such payment" in alert


def test_the_completion_marks_its_webhooks_processed_and_counts_the_payment(
    panel: Panel, panel_runtime: Runtime, cryptopay: CryptoPay, cryptobot: CryptoPayClient,
    clean_tables: sa.Engine, redis_client: Any,
) -> None:  # fmt: skip
    [user_id] = panel.add_users(user_spec())
    payment_id = new_payment(clean_tables, user_id)
    invoice = cryptobot.create_invoice(Decimal("5.00"), asset="USDT", payload=str(payment_id))
    cryptopay.pay(invoice.invoice_id)
    [paid] = cryptobot.get_invoices([invoice.invoice_id])
    log_id = webhook(clean_tables, invoice.invoice_id, payment_id, attempts=1)
    summary = process_payment_completion(str(payment_id), dict(paid.raw), "cryptobot")
    assert summary["outcome"] == "completed"
    assert state(clean_tables, log_id).processed_at is not None
    payments = RollingCounts(redis_client, "payments")
    assert payments.window(3600, time.time()) == {"completed": 1}  # the payment_failure anomaly's input
    again = process_payment_completion(str(payment_id), dict(paid.raw), "cryptobot")
    assert again["outcome"] == "already_completed" and payments.window(3600, time.time()) == {"completed": 1}


def completions(broker: StubBroker) -> list[str]:
    """The payment ids of the completions enqueued on ``broker``, in order."""
    queue = broker.queues.get("payments")
    return [str(dramatiq.Message.decode(raw).args[0]) for raw in (queue.queue if queue else [])]


def test_a_batch_limit_enqueues_that_many_webhooks_a_run_and_the_next_run_the_rest(
    make_runtime: MakeRuntime, stub_broker: StubBroker, clean_tables: sa.Engine
) -> None:
    # Given five unprocessed webhooks, oldest first, and RETRY_FAILED_WEBHOOKS_BATCH_LIMIT=3
    runtime = make_runtime(RETRY_FAILED_WEBHOOKS_BATCH_LIMIT="3")
    payments = [new_payment(clean_tables, 40 + i) for i in range(5)]
    for i, payment_id in enumerate(payments):
        webhook(clean_tables, 700 + i, payment_id, age_min=50 - i, attempts=1)
    # When the job runs
    first = retry_failed_webhooks()
    # Then it enqueues the completions of the three oldest and says it stopped at its limit
    assert (first["counts"], first["batch_limit"], first["limited"]) == ({"enqueued": 3}, 3, True)
    assert completions(stub_broker) == [str(p) for p in payments[:3]]
    # And once those completions are done, the next run enqueues the other two, and nothing twice
    for invoice_id in (700, 701, 702):
        mark_processed(runtime.database, invoice_id)
    second = retry_failed_webhooks()
    assert (second["counts"], second["batch_limit"], second["limited"]) == ({"enqueued": 2}, 3, False)
    assert completions(stub_broker) == [str(p) for p in payments]


def test_a_webhook_still_unprocessed_does_not_hold_back_those_not_retried_yet(
    make_runtime: MakeRuntime, clean_tables: sa.Engine
) -> None:
    runtime = make_runtime()
    payments = [new_payment(clean_tables, 50 + i) for i in range(3)]
    for i, payment_id in enumerate(payments):
        webhook(clean_tables, 800 + i, payment_id, age_min=50 - i, attempts=1)
    sent: list[str] = []

    def run() -> dict[str, int]:
        return retry(runtime.database, lambda p, *_: sent.append(p), runtime.alerts, max_tries=3,
                     retry_after=timedelta(minutes=10), limit=2)  # fmt: skip

    # the first run's completions never finish: the second run takes the untried one before them
    assert [run(), run()] == [{"enqueued": 2}, {"enqueued": 2}]
    assert sent == [str(payments[0]), str(payments[1]), str(payments[2]), str(payments[0])]
