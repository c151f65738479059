"""``worker-app subscriptions ...``: run the lifecycle jobs now, or see who a disable run would hit."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import click

from actors.subscriptions.disable_expired import Valve, select_expired
from worker_app.runtime import get_runtime


@click.group()
def subscriptions() -> None:
    """Subscription lifecycle on the Remnawave panel: reminders, disabling expired users, traffic reset."""


@subscriptions.command("disable-expired")
@click.option("--dry-run", is_flag=True, help="List who would be disabled; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="With --dry-run: one JSON object per user.")
def disable_expired(dry_run: bool, as_json: bool) -> None:
    """Enqueue disable_expired_users now, or (--dry-run) list the users it would disable and whether
    the safety valve would hold the run."""
    if not dry_run:
        _enqueue("disable_expired_users")
        return
    runtime = get_runtime()
    s = runtime.settings
    runtime.remnawave.require_3x()
    found = select_expired(runtime.remnawave.user_pages(), datetime.now(UTC), keep_preview=True)
    for user in found.preview:
        if as_json:
            click.echo(json.dumps(user))
        else:
            click.echo(
                f"{user['id']:>10}  {user['status']:<8} expired {user['expire_at']}  "
                f"telegram {user['telegram_id'] or '-':<12} {user['username']}"
            )
    valve = Valve(s.subscriptions_disable_max_fraction, s.subscriptions_disable_valve_min_users)
    held = valve.holds(len(found.expired), found.running)
    verdict = "HELD by the safety valve: a run would disable no one" if held else "a run would disable them"
    click.echo(f"{len(found.expired)} of {found.running} ACTIVE users expired; {verdict}", err=True)


@subscriptions.command("check-expiring")
def check_expiring() -> None:
    """Enqueue check_expiring_subscriptions now (the scheduler does it hourly)."""
    _enqueue("check_expiring_subscriptions")


@subscriptions.command("reset-traffic")
def reset_traffic() -> None:
    """Enqueue reset_monthly_traffic now: resets users not reset this month (once per month)."""
    _enqueue("reset_monthly_traffic")


def _enqueue(actor_name: str) -> None:
    import worker_app

    message = worker_app.broker.get_actor(actor_name).send()
    click.echo(f"enqueued {actor_name} ({message.message_id})")
