"""``auto_renew_subscriptions`` (every 30 min): users with auto-renew on whose subscription ends within
``AUTO_RENEW_WINDOW_MIN`` (60) get one Crypto Pay invoice for their plan per period, and a message
with its pay link (PRD 2.4).

Who: ``auto_renew_settings`` rows with ``enabled`` and an active plan (the table is the worker's
proposal for the preference: one row per Remnawave user id, written by the backend). Each user's
expiry is read from the panel.

Once per period, by construction: the period is the expiry being renewed, and the payment's id is
derived from (user, that expiry). The ``payments`` row is inserted first (``ON CONFLICT DO
NOTHING``); the invoice is created only for a row without one (``external_id``), with the payment id
as its ``payload``, then recorded on the row together with the message (keyed by the payment: sent
once). A second run in the same period finds the invoice and creates nothing. A worker killed
between ``createInvoice`` and that record makes the next run create a second invoice for the same
payment: both carry its id, so whichever is paid activates it (and the poller follows the recorded
one; the other expires unpaid). Paying is then the payments domain's business (webhook or poller).

``AUTO_RENEW_SUBSCRIPTIONS_BATCH_LIMIT`` caps the invoices one run creates: the run stops at the
first due user it has no room for (``limited``); the next run finds the users invoiced already
(they take no room) and invoices the rest.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import dramatiq
from sqlalchemy import text

from actors.notifications.outbox import Outgoing, queue_notifications
from actors.subscriptions import texts
from actors.subscriptions.check_expiring import QUEUE
from actors.subscriptions.disable_expired import period_of
from actors.subscriptions.report import RunReport
from worker_app.clients.cryptobot import CryptoPayClient
from worker_app.clients.remnawave import RemnawaveClient, RemnawaveNotFound, User
from worker_app.db import Database
from worker_app.runtime import get_runtime

log = logging.getLogger(__name__)
JOB = "auto_renew_subscriptions"
NAMESPACE = uuid.UUID("0b6f0d8e-3c55-4f0e-9d64-2b8c7a1e5f42")
"""Namespace of auto-renew payment ids (uuid5 of ``auto_renew:<user>:<expiry>``): fixed forever."""
CRYPTO_ASSETS = frozenset({"USDT", "TON", "BTC", "ETH", "LTC", "BNB", "TRX", "USDC", "SOL", "DOGE", "NOT"})
"""A plan priced in one of these is a crypto invoice; any other currency (USD, EUR, RUB, …) fiat."""
NOTIFICATION_TYPE = "auto_renew_invoice"

_PREFERENCES = text(
    """
    SELECT s.user_id, s.telegram_id, s.plan_id, p.name, p.duration_days, p.price, p.currency
    FROM auto_renew_settings s JOIN subscription_plans p ON p.id = s.plan_id
    WHERE s.enabled AND p.is_active
    ORDER BY s.user_id
    """
)
_PAYMENT = text(
    """
    INSERT INTO payments (id, user_id, telegram_id, plan_id, provider, amount, currency, subscription_days)
    VALUES (:id, :user_id, :telegram_id, :plan_id, 'cryptobot', :amount, :currency, :days)
    ON CONFLICT (id) DO NOTHING
    """
)
_INVOICED = text("SELECT external_id, status FROM payments WHERE id = :id")
_RECORD = text(
    "UPDATE payments SET external_id = :invoice WHERE id = :id AND external_id IS NULL RETURNING id"
)


@dataclass(frozen=True)
class Preference:
    user_id: int
    telegram_id: int | None
    plan_id: uuid.UUID
    plan: str
    days: int
    price: Decimal
    currency: str


def payment_id_for(user_id: int, expire_at: datetime) -> uuid.UUID:
    """The auto-renew payment of ``user_id`` for the period ending at ``expire_at``."""
    return uuid.uuid5(NAMESPACE, f"auto_renew:{user_id}:{period_of(expire_at)}")


def preferences(database: Database) -> list[Preference]:
    with database.transaction() as s:
        return [Preference(r.user_id, r.telegram_id, r.plan_id, r.name, r.duration_days, r.price, r.currency)
                for r in s.execute(_PREFERENCES)]  # fmt: skip


def auto_renew(
    database: Database, panel: RemnawaveClient, cryptopay: CryptoPayClient, report: RunReport, *,
    now: datetime, window: timedelta, invoice_expires_s: int, renew_url: str, limit: int | None = None,
) -> None:  # fmt: skip
    """One run over every preference (see the module docstring), creating at most ``limit``
    invoices (``None``: no cap)."""
    if limit is not None:
        report.details.update(batch_limit=limit, limited=False)
    invoiced = 0
    for pref in preferences(database):
        try:
            user = panel.get_user(pref.user_id)
        except RemnawaveNotFound:
            report.add("not_found")
            continue
        if user.expire_at > now + window:
            report.add("not_due")
            continue
        if limit is not None and invoiced >= limit:  # this user and the rest: the next run
            report.details["limited"] = True
            return
        outcome = _invoice(database, cryptopay, pref, user, invoice_expires_s=invoice_expires_s,
                           renew_url=renew_url)  # fmt: skip
        report.add(outcome)
        invoiced += outcome != "already_handled"


def _invoice(
    database: Database, cryptopay: CryptoPayClient, pref: Preference, user: User, *,
    invoice_expires_s: int, renew_url: str,
) -> str:  # fmt: skip
    """The payment row of ``user``'s period, then its invoice and message unless it has them; the
    outcome: ``already_handled``, ``queued`` (message queued) or ``invoiced`` (no message)."""
    payment_id = payment_id_for(pref.user_id, user.expire_at)
    telegram_id = pref.telegram_id if pref.telegram_id is not None else user.telegram_id
    with database.transaction() as s:
        s.execute(_PAYMENT, {"id": payment_id, "user_id": pref.user_id, "telegram_id": telegram_id,
                             "plan_id": pref.plan_id, "amount": pref.price, "currency": pref.currency,
                             "days": pref.days})  # fmt: skip
        existing = s.execute(_INVOICED, {"id": payment_id}).one()
    if existing.external_id is not None or existing.status != "pending":
        return "already_handled"
    invoice = cryptopay.create_invoice(
        pref.price, **_currency(pref.currency), payload=str(payment_id), expires_in_s=invoice_expires_s,
        description=f"CyberVPN {pref.plan}: {pref.days} days", paid_btn_name="callback",
        paid_btn_url=renew_url,
    )  # fmt: skip
    with database.transaction() as s:
        recorded = s.execute(_RECORD, {"invoice": str(invoice.invoice_id), "id": payment_id}).one_or_none()
        if recorded is not None and telegram_id is not None:
            message = texts.auto_renew_invoice(pref.plan, pref.price, pref.currency, user.expire_at,
                                               invoice.bot_invoice_url)  # fmt: skip
            queue_notifications(s, [Outgoing(f"auto_renew:{payment_id}", telegram_id, message,
                                             NOTIFICATION_TYPE)])  # fmt: skip
    return "queued" if recorded is not None and telegram_id is not None else "invoiced"


def _currency(currency: str) -> dict[str, str]:
    code = currency.upper()
    return {"asset": code} if code in CRYPTO_ASSETS else {"fiat": code}


@dramatiq.actor(queue_name=QUEUE, store_results=True)
def auto_renew_subscriptions() -> dict[str, Any]:
    """Invoice the users with auto-renew whose subscription ends within AUTO_RENEW_WINDOW_MIN, once
    per period, with a message carrying the pay link (every 30 min)."""
    runtime = get_runtime()
    s = runtime.settings
    with RunReport(JOB).running() as report:
        auto_renew(runtime.database, runtime.remnawave, runtime.cryptobot, report, now=datetime.now(UTC),
                   window=timedelta(minutes=s.auto_renew_window_min),
                   invoice_expires_s=s.auto_renew_invoice_expires_s,
                   renew_url=s.subscriptions_renew_url, limit=s.batch_limit(JOB))  # fmt: skip
    return report.summary
