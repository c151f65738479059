"""A worker SIGKILLed at each step of ``process_payment_completion`` on a real RabbitMQ, the message
redelivered to a second worker: the user's expiry is extended exactly once in every case.

The test stops the first worker at the step it wants by holding the row that step needs next (a
``FOR UPDATE`` in its own transaction), waits until the worker is blocked on it, kills the worker's
whole process group and lets go:

* ``before_the_row_update`` — the ``payments`` row: ``begin`` waits before it writes anything;
* ``after_the_row_update`` — the user's ``subscription_actions`` row: the plan is committed,
  ``apply`` waits before it calls the panel;
* ``after_the_remnawave_call`` — the ``payments`` row again, taken once the plan is committed, while
  the panel call (slowed down) is in flight: the panel has the new expiry, ``finish`` waits;
* ``after_the_commit`` — the invoice's ``webhook_logs`` row: the payment is completed, marking its
  webhooks processed waits (the message is not acked yet).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from actors.payments import process_payment_completion
from actors.subscriptions.actions import action_id
from actors.subscriptions.disable_expired import KIND, period_of
from tests.fixtures.cryptobot import CryptoPay
from tests.fixtures.remnawave import Panel, user_spec
from tests.fixtures.worker import wait_for, worker_group
from tests.payments.test_activation import new_payment, parse
from worker_app.clients.cryptobot import CryptoPayClient

STEPS = ("before_the_row_update", "after_the_row_update", "after_the_remnawave_call", "after_the_commit")


def blocked_on_a_lock(engine: sa.Engine) -> bool:
    with engine.connect() as conn:
        waiting = ("SELECT count(*) FROM pg_stat_activity "
                   "WHERE wait_event_type = 'Lock' AND datname = current_database()")  # fmt: skip
        return bool(conn.execute(sa.text(waiting)).scalar_one())


def activation_state(engine: sa.Engine, payment_id: Any) -> str | None:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT state FROM payment_activations WHERE payment_id = :id"),
                            {"id": payment_id}).scalar()  # fmt: skip


@pytest.mark.parametrize("step", STEPS)
def test_a_worker_killed_at_each_step_extends_the_user_exactly_once(
    tmp_path: Path, rabbitmq_vhost: str, panel: Panel, cryptopay: CryptoPay, cryptobot: CryptoPayClient,
    clean_tables: sa.Engine, redis_client: Any, step: str,
) -> None:  # fmt: skip
    # Given a paid invoice of a 30-day payment, and its webhook recorded
    panel.admin("POST", "tokens", {"token": os.environ["REMNAWAVE_API_TOKEN"], "scopes": None})
    [user_id] = panel.add_users(user_spec(expire_in=timedelta(days=3), telegram_id=777))
    before = parse(panel.user(user_id)["expireAt"])
    payment_id = new_payment(clean_tables, user_id, telegram_id=777)
    invoice = cryptobot.create_invoice(Decimal("5.00"), asset="USDT", payload=str(payment_id))
    cryptopay.pay(invoice.invoice_id)
    [paid] = cryptobot.get_invoices([invoice.invoice_id])
    with clean_tables.begin() as conn:
        conn.execute(sa.text("INSERT INTO webhook_logs (source, event_type, external_id, payload, is_valid, "
                             "attempts) VALUES ('cryptobot', 'invoice_paid', :inv, '{}', true, 1)"),
                     {"inv": str(invoice.invoice_id)})  # fmt: skip
    env = {"REMNAWAVE_URL": panel.url}
    period = period_of(before)  # the expiry this payment renews: the user's subscription_actions row
    holder = clean_tables.connect()
    hold = holder.begin()

    def lock(sql: str, **params: Any) -> None:
        holder.execute(sa.text(sql), params)

    locks: dict[str, Callable[[], None]] = {
        "payments": lambda: lock("SELECT 1 FROM payments WHERE id = :id FOR UPDATE", id=payment_id),
        "actions": lambda: lock(
            "INSERT INTO subscription_actions (id, kind, user_id, period) "
            "VALUES (:id, :kind, :user, :period) ON CONFLICT (id) DO UPDATE SET period = excluded.period",
            id=action_id(KIND, user_id, period), kind=KIND, user=user_id, period=period),
        "webhooks": lambda: lock("SELECT 1 FROM webhook_logs WHERE external_id = :inv FOR UPDATE",
                                 inv=str(invoice.invoice_id)),
    }  # fmt: skip

    # When a worker runs the completion and is killed at the step
    with worker_group(
        tmp_path / "worker-1.log", env, ("payments",), modules=(), processes=1, threads=1
    ) as first:
        if step == "before_the_row_update":
            locks["payments"]()
        elif step == "after_the_row_update":
            locks["actions"]()
        elif step == "after_the_commit":
            locks["webhooks"]()
        else:
            panel.faults(latency_ms=1500)
        process_payment_completion.send(str(payment_id), dict(paid.raw), "cryptobot")
        if step == "after_the_remnawave_call":
            wait_for(
                lambda: activation_state(clean_tables, payment_id) == "activating", 30, "the stored plan"
            )
            locks["payments"]()
            wait_for(
                lambda: any(c["method"] == "PATCH" for c in panel.calls("/api/users")), 30, "the panel call"
            )
        wait_for(lambda: blocked_on_a_lock(clean_tables), 30, f"the worker blocked {step}")
        os.killpg(first.proc.pid, signal.SIGKILL)
        first.proc.wait(timeout=30)
    hold.rollback()
    holder.close()
    panel.faults(latency_ms=0)
    seen_by_the_panel = parse(panel.user(user_id)["expireAt"])
    assert seen_by_the_panel == (before if step in STEPS[:2] else before + timedelta(days=30))

    # Then a second worker gets the message again and finishes: extended once, completed once, told once
    with worker_group(tmp_path / "worker-2.log", env, ("payments",), modules=(), processes=1) as second:
        wait_for(
            lambda: "payments job done: process_payment_completion" in second.log(), 60, "the redelivery"
        )
    assert parse(panel.user(user_id)["expireAt"]) == before + timedelta(days=30)
    with clean_tables.connect() as conn:
        status = conn.execute(
            sa.text("SELECT status FROM payments WHERE id = :id"), {"id": payment_id}
        ).scalar()
        told = conn.execute(
            sa.text("SELECT count(*) FROM notification_queue WHERE telegram_id = 777")
        ).scalar()
        processed = conn.execute(sa.text("SELECT processed_at IS NOT NULL FROM webhook_logs")).scalar()
    assert (status, activation_state(clean_tables, payment_id), told, processed) == (
        "completed",
        "completed",
        1,
        True,
    )
    patches = [c for c in panel.calls("/api/users") if c["method"] == "PATCH"]
    assert len(patches) == (
        2 if step == "after_the_remnawave_call" else 1
    )  # the repeat is absolute: harmless
