"""``worker-app payments ...``: payments that were paid but are not (yet) subscription time."""

from __future__ import annotations

import json

import click
from sqlalchemy import text

from worker_app.runtime import get_runtime
from worker_app.timefmt import utc_stamp

_UNACTIVATED = text(
    """
    SELECT a.payment_id, a.user_id, a.invoice_id, a.state, a.days, a.new_expire_at, a.source, a.reason,
           a.created_at, p.amount, p.currency, p.telegram_id
    FROM payment_activations a JOIN payments p ON p.id = a.payment_id
    WHERE a.state <> 'completed'
    ORDER BY a.created_at
    """
)


@click.group()
def payments() -> None:
    """Crypto Pay payments: what was paid and not turned into subscription time."""


@payments.command("unactivated")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per payment.")
def unactivated(as_json: bool) -> None:
    """Paid payments that are not completed: ACTIVATING (the new expiry is computed and stored; the
    panel has not confirmed it yet — the poller and retries finish it) and REVIEW (the invoice did
    not match the payment: never activated; REASON says why). Oldest first; exit 1 when there is any."""
    with get_runtime().database.transaction() as s:
        rows = list(s.execute(_UNACTIVATED))
    for r in rows:
        if as_json:
            click.echo(json.dumps({
                "payment_id": str(r.payment_id), "user_id": r.user_id, "invoice_id": r.invoice_id,
                "state": r.state, "days": r.days, "amount": str(r.amount), "currency": r.currency,
                "new_expire_at": r.new_expire_at.isoformat() if r.new_expire_at else None,
                "source": r.source, "reason": r.reason, "since": r.created_at.isoformat(),
            }))  # fmt: skip
            continue
        what = r.reason or f"to {utc_stamp(r.new_expire_at)} UTC"
        click.echo(
            f"{utc_stamp(r.created_at)}  {r.state.upper():<10} payment {r.payment_id}  user {r.user_id}  "
            f"{r.amount.normalize():f} {r.currency}  invoice {r.invoice_id}  {what}"
        )
    click.echo(f"{len(rows)} paid payment(s) not activated", err=True)
    if rows:
        raise SystemExit(1)
