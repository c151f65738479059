"""What the payments domain tells users (HTML parse mode)."""

from __future__ import annotations

import html
from datetime import datetime
from decimal import Decimal

from worker_app.timefmt import utc_stamp


def amount_text(value: Decimal) -> str:
    """``Decimal('150.00000000')`` → ``150``, ``1.50`` → ``1.5``; never an exponent (``1E+2``)."""
    return f"{Decimal(value).normalize():f}"


def completed(amount: Decimal, currency: str, days: int, new_expire_at: datetime) -> str:
    """The confirmation of a payment turned into subscription time."""
    return (
        f"✅ Payment of {html.escape(f'{amount_text(amount)} {currency}')} received: your CyberVPN "
        f"subscription is extended by {days} days, to {utc_stamp(new_expire_at)} UTC."
    )


def expired() -> str:
    """The notice of a payment that will not go through (its invoice expired unpaid)."""
    return "⌛ Your CyberVPN payment was not completed in time and has been cancelled. Nothing was charged."
