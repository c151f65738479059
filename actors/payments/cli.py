"""``worker-app payments ...``: payments that were paid but are not (yet) subscription time."""

from __future__ import annotations

import json

import click
from sqlalchemy import text

from actors.payments.texts import amount_text
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
            f"{amount_text(r.amount)} {r.currency}  invoice {r.invoice_id}  {what}"
        )
    click.echo(f"{len(rows)} paid payment(s) not activated", err=True)
    if rows:
        raise SystemExit(1)


_STATS_LINES = (
    ("by plan", "count_by_plan"),
    ("by provider", "count_by_provider"),
    ("created", "created_by_status"),
    ("paid, not activated", "unactivated"),
)


@payments.command("stats")
@click.option("--date", "day", metavar="YYYY-MM-DD", help="The UTC day (default: yesterday).")
@click.option("--days", default=1, show_default=True, type=click.IntRange(1, 366),
              help="That many days ending with --date.")  # fmt: skip
@click.option("--store", is_flag=True, help="Also write them to cybervpn:stats:payments:{date}, as "
              "aggregate_financial_stats does (overwriting).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="One JSON object per day.")
def stats(day: str | None, days: int, store: bool, as_json: bool) -> None:
    """A day's payments computed from PostgreSQL now: completed ones (paid that day) with their
    revenue and average per currency, by plan and provider; payments created that day by status; paid
    ones not activated. Exit 2 for a date that is not a finished UTC day."""
    from datetime import UTC, datetime, timedelta

    from actors.payments import financial_stats as fs
    from worker_app.errors import PermanentError

    runtime = get_runtime()
    now = datetime.now(UTC)
    try:
        _, last = fs.days_to_aggregate(day, today=now.date(), recent=1)
    except PermanentError as e:
        raise click.BadParameter(str(e), param_hint="--date") from None
    summaries = fs.compute(runtime.database, last - timedelta(days=days - 1), last, now=now)
    if store:
        fs.store(runtime.redis, summaries, ttl=timedelta(days=runtime.settings.payments_stats_ttl_days))
    for s in summaries:
        if as_json:
            click.echo(json.dumps(s))
            continue
        revenue = ", ".join(f"{v} {c} (avg {s['avg_amount'][c]})" for c, v in s["total_revenue"].items())
        click.echo(f"{s['date']}  completed {s['completed']}: {revenue or 'no revenue'}")
        for label, field in _STATS_LINES:
            if s[field]:
                click.echo(f"  {label}: " + ", ".join(f"{k} {v}" for k, v in s[field].items()))
    if store:
        click.echo(f"stored {len(summaries)} day(s) in cybervpn:stats:payments:*", err=True)
