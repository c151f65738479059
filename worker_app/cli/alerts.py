"""``worker-app alerts``: recent admin alerts, one per fingerprint, with their counts."""

from __future__ import annotations

import json

import click

from worker_app.alerts import KINDS, recent_alerts
from worker_app.policies import SEVERITIES
from worker_app.runtime import get_runtime
from worker_app.timefmt import utc_stamp


@click.command()
@click.option("--severity", type=click.Choice(SEVERITIES), help="Only alerts of this severity.")
@click.option("--kind", type=click.Choice(KINDS), help="Only alerts of this kind.")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option(
    "--json", "as_json", is_flag=True, help="JSON lines (the whole latest message) instead of a table."
)
def alerts(severity: str | None, kind: str | None, limit: int, as_json: bool) -> None:
    """Recent alerts, newest first: when last raised, severity, kind, how often (COUNT) and how many
    messages went out for it (SENT: one per de-duplication window; summaries not counted), and what.
    Kept in Redis for ALERT_HISTORY_DAYS; exit 3 when Redis is unreachable."""
    found = recent_alerts(get_runtime().redis, limit, severity=severity, kind=kind)
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
