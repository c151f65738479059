"""``worker-app alerts``: the open alerts (conditions true now); ``--recent``: the alert history, one
row per fingerprint, with counts."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from typing import Any

import click

from worker_app.alerts import KINDS, recent_alerts
from worker_app.open_alerts import OpenAlerts
from worker_app.policies import SEVERITIES
from worker_app.runtime import get_runtime
from worker_app.timefmt import utc_stamp


@click.command()
@click.option("--recent", is_flag=True, help="The history of alerts raised (open or not), newest first.")
@click.option("--severity", type=click.Choice(SEVERITIES), help="Only alerts of this severity.")
@click.option("--kind", type=click.Choice(KINDS), help="Only alerts of this kind (with --recent).")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True, help="With --recent.")
@click.option(
    "--json", "as_json", is_flag=True, help="JSON lines (the whole latest message) instead of a table."
)
def alerts(recent: bool, severity: str | None, kind: str | None, limit: int, as_json: bool) -> None:
    """Open alerts, oldest first: since when, last confirmed, severity, key and what — a node down, a
    dependency down, an anomaly; each closes (with one resolved message) when its condition clears.

    --recent: alerts raised, newest first, one per fingerprint: when last raised, severity, kind, how
    often (COUNT) and how many messages went out for it (SENT: one per de-duplication window;
    summaries not counted), and what; kept for ALERT_HISTORY_DAYS.

    Both come from Redis; exit 3 when it is unreachable."""
    redis_client = get_runtime().redis
    if recent:
        _recent(recent_alerts(redis_client, limit, severity=severity, kind=kind), as_json)
        return
    if kind is not None:
        raise click.UsageError("--kind filters the history: use it with --recent")
    found = [a for a in OpenAlerts(redis_client).all() if severity is None or a.severity == severity]
    if as_json:
        for alert in found:
            click.echo(json.dumps(asdict(alert)))
        return
    if not found:
        click.echo("no open alerts (worker-app alerts --recent: the history)", err=True)
        return
    now, width = time.time(), max(len(a.key) for a in found)
    click.echo(f"{'SINCE (UTC)':<19} {'FOR':>9} {'SEVERITY':<8} {'KEY':<{width}}  TITLE")
    for alert in found:
        since, lasted = utc_stamp(alert.first_seen), _short(now - alert.first_seen)
        click.echo(f"{since:<19} {lasted:>9} {alert.severity:<8} {alert.key:<{width}}  {alert.title}")


def _recent(found: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        for item in found:
            click.echo(json.dumps(item))
        return
    if not found:
        click.echo("no alerts", err=True)
        return
    click.echo(f"{'LAST SEEN (UTC)':<19} {'SEVERITY':<8} {'KIND':<16} {'COUNT':>6} {'SENT':>4}  TITLE")
    for item in found:
        stamp = utc_stamp(item["last_at"])
        click.echo(
            f"{stamp:<19} {item['severity']:<8} {item['kind']:<16} {item['count']:>6} {item['messages']:>4}  "
            f"{item['title']}"
        )


def _short(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d{hours}h"
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"
