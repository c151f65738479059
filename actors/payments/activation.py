"""A paid payment becomes subscription time exactly once, whoever sees it first and however often.

Remnawave's ``extend`` is relative (``expireAt = max(expireAt, now) + days``): a redelivered message
calling it again would give a second period free. So activation has three steps, each safe to repeat:

1. :func:`begin` — in one transaction holding the ``payments`` row (``FOR UPDATE``: the webhook path
   and the poller meet here, one after the other): check the invoice against the payment (status
   paid, same amount, same asset or fiat, our payment id in its payload) — a mismatch is never
   activated: ``review``, with a CRITICAL alert; else read the user's expiry once, compute the new
   absolute ``expireAt`` and store it in ``payment_activations`` (state ``activating``). A payment
   already activating returns the stored plan: the expiry is never computed twice.
2. :func:`apply` — tell the panel that absolute date (``PATCH /api/users``; a repeat changes
   nothing) after holding off ``disable_expired_users`` for the user's old expiry, and enable the
   user if that job had switched them off for it (a user an admin disabled stays disabled).
3. :func:`finish` — ``payments.status = 'completed'`` only where it is not yet (one caller wins),
   the activation ``completed``, and the user's confirmation queued (keyed by the payment: once) —
   in one transaction.

A worker killed anywhere in between leaves a state the next attempt finishes: before (1) commits,
nothing happened; after it, the stored date is applied again (harmless) and the payment completed.
A payment stuck ``activating`` (the panel refusing, retries spent) stays visible — ``worker-app
payments unactivated`` — and is never silently failed.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import text

from actors.notifications.outbox import Outgoing, queue_notifications
from actors.payments.texts import amount_text
from actors.subscriptions import actions
from actors.subscriptions.disable_expired import KIND as DISABLE_KIND
from actors.subscriptions.disable_expired import period_of
from worker_app.clients.cryptobot import Invoice
from worker_app.clients.remnawave import RemnawaveClient, User
from worker_app.db import Database
from worker_app.errors import PermanentError
from worker_app.timefmt import iso_ms

log = logging.getLogger(__name__)

ACTIVATING, COMPLETED, REVIEW = "activating", "completed", "review"


class UnknownPayment(PermanentError):
    """No ``payments`` row with that id."""


@dataclass(frozen=True)
class Plan:
    """An activation as stored: the absolute expiry the user gets for this payment."""

    payment_id: uuid.UUID
    user_id: int
    telegram_id: int | None
    days: int
    base_expire_at: datetime
    new_expire_at: datetime


@dataclass(frozen=True)
class Begun:
    """What :func:`begin` found: ``plan`` to apply, or why there is nothing to apply (``outcome``:
    ``activating`` — apply ``plan``; ``completed`` — done before; ``review`` — ``reason``)."""

    outcome: str
    plan: Plan | None = None
    reason: str | None = None
    new_review: bool = False
    """``review`` decided by this call (alert once)."""


_LOCK = text(
    """
    SELECT p.id, p.user_id, p.telegram_id, p.status, p.amount, p.currency, p.external_id,
           COALESCE(p.subscription_days, s.duration_days) AS days
    FROM payments p LEFT JOIN subscription_plans s ON s.id = p.plan_id
    WHERE p.id = :id
    FOR UPDATE OF p
    """
)
_ACTIVATION = text("SELECT * FROM payment_activations WHERE payment_id = :id")
_INSERT = text(
    """
    INSERT INTO payment_activations
        (payment_id, user_id, invoice_id, state, days, base_expire_at, new_expire_at, source, reason)
    VALUES (:payment_id, :user_id, :invoice_id, :state, :days, :base, :new, :source, :reason)
    """
)
_COMPLETE = text(
    """
    UPDATE payments SET status = 'completed', paid_at = COALESCE(paid_at, :paid_at),
                        external_id = COALESCE(external_id, :invoice_id), updated_at = now()
    WHERE id = :id AND status <> 'completed'
    RETURNING telegram_id
    """
)
_DONE = text(
    """
    UPDATE payment_activations SET state = 'completed', completed_at = now(), attempts = attempts + 1
    WHERE payment_id = :id
    """
)


def mismatch(payment: Any, invoice: Invoice) -> str | None:
    """Why ``invoice`` cannot activate ``payment`` (status, invoice id, payload, currency, amount,
    what was paid, the days to give); ``None`` when it can."""
    return next(_problems(payment, invoice), None)


def _problems(payment: Any, invoice: Invoice) -> Iterator[str]:
    number, currency = invoice.invoice_id, str(payment.currency).upper()
    if invoice.status != "paid":
        yield f"invoice {number} is {invoice.status}, not paid"
    ours = invoice.payload == str(payment.id)  # our payment id, put there when the invoice was made
    if invoice.payload is not None and not ours:
        yield f"invoice {number} carries payload {invoice.payload!r}, not this payment's id"
    if payment.external_id is not None and str(payment.external_id) != str(number) and not ours:
        yield f"invoice {number} is not this payment's invoice ({payment.external_id})"
    invoiced = invoice.asset if invoice.currency_type == "crypto" else invoice.fiat
    if (invoiced or "").upper() != currency:
        yield f"invoice {number} is in {invoiced}, the payment in {payment.currency}"
    if Decimal(invoice.amount) != Decimal(payment.amount):
        invoiced_amount, owed = amount_text(invoice.amount), amount_text(payment.amount)
        yield f"invoice {number} is for {invoiced_amount}, the payment for {owed}"
    underpaid = invoice.paid_amount is None or invoice.paid_amount < Decimal(payment.amount)
    if invoice.currency_type == "crypto" and ((invoice.paid_asset or "").upper() != currency or underpaid):
        paid = "nothing" if invoice.paid_amount is None else amount_text(invoice.paid_amount)
        yield f"invoice {number} was paid {paid} {invoice.paid_asset or ''}".rstrip()
    if not payment.days or payment.days <= 0:
        yield "the payment has no subscription_days and no plan with a duration"


def begin(
    database: Database, panel: RemnawaveClient, payment_id: uuid.UUID, invoice: Invoice, *, source: str,
    now: datetime,
) -> Begun:  # fmt: skip
    """Step 1: the stored plan of ``payment_id`` (computed now if there is none), or why not."""
    with database.transaction() as s:
        payment = s.execute(_LOCK, {"id": payment_id}).one_or_none()
        if payment is None:
            raise UnknownPayment(f"no payment {payment_id}")
        stored = s.execute(_ACTIVATION, {"id": payment_id}).one_or_none()
        if payment.status == "completed":
            return Begun(COMPLETED)
        if stored is not None and stored.state == REVIEW:
            return Begun(REVIEW, reason=stored.reason)
        if stored is not None:
            return Begun(ACTIVATING, _plan(payment, stored.days, stored.base_expire_at, stored.new_expire_at))
        reason = mismatch(payment, invoice)
        if reason is not None:
            s.execute(_INSERT, {"payment_id": payment_id, "user_id": payment.user_id,
                                "invoice_id": str(invoice.invoice_id), "state": REVIEW, "days": payment.days,
                                "base": None, "new": None, "source": source, "reason": reason})  # fmt: skip
            s.execute(text("UPDATE payments SET error_message = :r, updated_at = now() WHERE id = :id"),
                      {"r": f"review: {reason}", "id": payment_id})  # fmt: skip
            return Begun(REVIEW, reason=reason, new_review=True)
        base = panel.get_user(payment.user_id).expire_at
        new = max(base, now) + timedelta(days=int(payment.days))
        s.execute(_INSERT, {"payment_id": payment_id, "user_id": payment.user_id,
                            "invoice_id": str(invoice.invoice_id), "state": ACTIVATING, "days": payment.days,
                            "base": base, "new": new, "source": source, "reason": None})  # fmt: skip
        return Begun(ACTIVATING, _plan(payment, int(payment.days), base, new))


_REFUSED = text(
    """
    INSERT INTO payment_activations (payment_id, user_id, invoice_id, state, days, source, reason)
    SELECT id, user_id, :invoice_id, 'review', subscription_days, :source, :reason FROM payments
    WHERE id = :id AND status <> 'completed'
    ON CONFLICT (payment_id) DO UPDATE SET state = 'review', reason = EXCLUDED.reason,
                                           attempts = payment_activations.attempts + 1
        WHERE payment_activations.state = 'activating'
    RETURNING payment_id
    """
)


def refused(
    database: Database, payment_id: uuid.UUID, invoice: Invoice, *, source: str, reason: str
) -> Begun:
    """The panel refused this paid payment for good (the user is gone, the update rejected): it goes
    to ``review`` — listed by ``worker-app payments unactivated``, never failed by the poller as
    unpaid — unless another call completed it meanwhile (``completed``). ``new_review``: this call
    put it there (alert once)."""
    with database.transaction() as s:
        marked = s.execute(_REFUSED, {"id": payment_id, "invoice_id": str(invoice.invoice_id),
                                      "source": source, "reason": reason}).one_or_none()  # fmt: skip
        if marked is not None:
            s.execute(text("UPDATE payments SET error_message = :r, updated_at = now() WHERE id = :id"),
                      {"r": f"review: {reason}", "id": payment_id})  # fmt: skip
            return Begun(REVIEW, reason=reason, new_review=True)
        stored = s.execute(_ACTIVATION, {"id": payment_id}).one_or_none()
    if stored is not None and stored.state == REVIEW:
        return Begun(REVIEW, reason=stored.reason)
    return Begun(COMPLETED)


def _plan(payment: Any, days: int, base: datetime, new: datetime) -> Plan:
    return Plan(payment.id, int(payment.user_id), payment.telegram_id, int(days), base, new)


def apply(panel: RemnawaveClient, database: Database, plan: Plan) -> User:
    """Step 2: the panel has the plan's absolute expiry, and the user is enabled if the expiry job
    had disabled them for the expiry this payment renews. Safe to repeat."""
    held = actions.hold_off(database, DISABLE_KIND, plan.user_id, period_of(plan.base_expire_at), "renewed")
    user = panel.update_user(plan.user_id, {"expireAt": iso_ms(plan.new_expire_at)})
    if user.status == "DISABLED" and held == "done":
        user = panel.user_action(plan.user_id, "enable") or panel.get_user(plan.user_id)
    elif user.status == "DISABLED":
        log.warning("payment %s: user %s renewed but left DISABLED (not disabled for expiring)",
                    plan.payment_id, plan.user_id)  # fmt: skip
    return user


def finish(database: Database, plan: Plan, invoice: Invoice, confirmation: str | None) -> bool:
    """Step 3: the payment completed and the user told, once; whether this call completed it."""
    with database.transaction() as s:
        row = s.execute(_COMPLETE, {"id": plan.payment_id, "paid_at": invoice.paid_at or datetime.now(UTC),
                                    "invoice_id": str(invoice.invoice_id)}).one_or_none()  # fmt: skip
        s.execute(_DONE, {"id": plan.payment_id})
        if row is None:
            return False
        if confirmation is not None and plan.telegram_id is not None:
            queue_notifications(s, [Outgoing(f"payment:{plan.payment_id}:completed", plan.telegram_id,
                                             confirmation, "payment_completed")])  # fmt: skip
        return True
