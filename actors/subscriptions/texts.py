"""What the subscriptions domain tells users (HTML parse mode; the backend owns the wording of
everything else, this is the worker's own)."""

from __future__ import annotations

import html
from datetime import datetime
from decimal import Decimal

from worker_app.timefmt import utc_stamp

BRACKET_WORDS = {"7d": "in 7 days", "3d": "in 3 days", "24h": "within 24 hours", "6h": "within 6 hours"}


def reminder(bracket: str, expire_at: datetime, renew_url: str) -> str:
    """The expiry reminder of one bracket."""
    return (
        f"⏳ Your CyberVPN subscription ends {BRACKET_WORDS[bracket]} "
        f"({utc_stamp(expire_at)} UTC).\n"
        f'Renew it to stay connected: <a href="{html.escape(renew_url, quote=True)}">renew</a>'
    )


def disabled(expire_at: datetime, renew_url: str) -> str:
    """The notice to a user whose expired subscription was switched off, with what to do."""
    return (
        f"🔒 Your CyberVPN subscription ended on {utc_stamp(expire_at)} UTC and has been "
        "switched off.\n"
        f'Renew it and it is back at once: <a href="{html.escape(renew_url, quote=True)}">renew</a>'
    )


def traffic_reset(month: str) -> str:
    """The notice that a new month's traffic allowance has started."""
    return (
        f"🔄 Your CyberVPN traffic counter was reset for {html.escape(month)}: the full allowance is yours."
    )


def auto_renew_invoice(plan: str, price: Decimal, currency: str, expire_at: datetime, pay_url: str) -> str:
    """The auto-renew message: the subscription ends soon, here is the invoice to renew it."""
    return (
        f"🔁 Your CyberVPN subscription ends at {utc_stamp(expire_at)} UTC. Auto-renew has prepared "
        f"your {html.escape(plan)} renewal: {html.escape(f'{price.normalize():f} {currency}')}.\n"
        f'<a href="{html.escape(pay_url, quote=True)}">Pay with CryptoBot</a>'
    )
