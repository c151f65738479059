"""What the payments domain tells users (HTML parse mode)."""

from __future__ import annotations

import html
from datetime import datetime
from decimal import Decimal

from worker_app.timefmt import utc_stamp


def completed(amount: Decimal, currency: str, days: int, new_expire_at: datetime) -> str:
    """The confirmation of a payment turned into subscription time."""
    return (
        f"✅ Payment of {html.escape(f'{amount.normalize():f} {currency}')} received: your CyberVPN "
        f"subscription is extended by {days} days, to {utc_stamp(new_expire_at)} UTC."
    )


def expired() -> str:
    """The notice of a payment that will not go through (its invoice expired unpaid)."""
    return "⌛ Your CyberVPN payment was not completed in time and has been cancelled. Nothing was charged."
