"""``worker-app analytics backfill`` and ``worker-app stats``."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import click

from worker_app.days import finished_day, midnight
from worker_app.errors import PermanentError
from worker_app.runtime import get_runtime

#: The longest backfill in one command (the panel's users are streamed once for all of it).
MAX_DAYS = 92


def _day(value: str, option: str, today: date) -> date:
    try:
        return finished_day(value, today=today)
    except PermanentError as e:
        raise click.BadParameter(str(e), param_hint=option) from None


@click.group()
def analytics() -> None:
    """Daily and hourly aggregates in Redis: recompute past days."""


@analytics.command("backfill")
@click.option("--from", "first", required=True, metavar="YYYY-MM-DD", help="First UTC day.")
@click.option("--to", "last", required=True, metavar="YYYY-MM-DD", help="Last UTC day (inclusive).")
def backfill(first: str, last: str) -> None:
    """Recompute the days from --from to --to, overwriting: each hour's bandwidth per node (from the
    raw 5-minute snapshots still kept; an hour without keeps its key), then the daily stats and the
    daily payments stats. Running it twice gives the same result. Exit 2 for bad dates."""
    from actors.analytics import daily, hourly
    from actors.payments import financial_stats

    runtime = get_runtime()
    settings = runtime.settings
    now = datetime.now(UTC)
    start, end = _day(first, "--from", now.date()), _day(last, "--to", now.date())
    if end < start:
        raise click.BadParameter(f"{last} is before --from {first}", param_hint="--to")
    days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
    if len(days) > MAX_DAYS:
        raise click.BadParameter(f"{len(days)} days; at most {MAX_DAYS} in one run", param_hint="--to")
    nodes = hourly.known_nodes(runtime.redis, {n.uuid: n.name for n in runtime.remnawave.nodes()})
    hours = hourly.hours_of(midnight(start), midnight(end) + timedelta(hours=23))
    made = hourly.run(runtime.redis, nodes, hours, now=now,
                      ttl=timedelta(days=settings.analytics_hourly_ttl_days),
                      retention=timedelta(hours=settings.bandwidth_retention_h))  # fmt: skip
    payments = financial_stats.compute(runtime.database, start, end, now=now)
    users = runtime.remnawave.stream_users()
    stats = daily.compute(
        runtime.database, runtime.redis, users, nodes, days, payments_stats=payments, now=now
    )
    daily.store(runtime.redis, stats, ttl=timedelta(days=settings.analytics_daily_ttl_days))
    financial_stats.store(runtime.redis, payments, ttl=timedelta(days=settings.payments_stats_ttl_days))
    for day in stats:
        b = day["bandwidth"]
        click.echo(f"{day['date']}  users {day['users']['total']} (+{day['users']['new']})  "
                   f"bandwidth {b['total_bytes']} bytes ({b['hours_covered']}/24 h)  "
                   f"payments {day['revenue']['completed']}  "
                   f"admin operations {day['admin_operations']['total']}")  # fmt: skip
    click.echo(f"backfilled {len(days)} day(s): {made.written} hourly bandwidth keys written, "
               f"{made.empty} node-hours without snapshots kept as they were", err=True)  # fmt: skip


@click.command("stats")
@click.option("--json", "as_json", is_flag=True, help="The snapshot as stored (JSON).")
def stats(as_json: bool) -> None:
    """The realtime snapshot (cybervpn:dashboard:realtime, refreshed every 30 s by
    update_realtime_metrics): online users, servers, bandwidth now, the newest events. Exit 1 when
    there is none (the job has not run for ANALYTICS_REALTIME_TTL_S)."""
    from actors.analytics.realtime import REALTIME_KEY

    raw = get_runtime().redis.get(REALTIME_KEY)
    if raw is None:
        click.echo("no realtime snapshot: update_realtime_metrics has not run lately", err=True)
        raise SystemExit(1)
    if as_json:
        click.echo(raw)
        return
    figures: dict[str, Any] = json.loads(raw)
    servers, band = figures["servers"], figures["bandwidth"]
    click.echo(f"as of {figures['at']}")
    click.echo(f"online users  {figures['online_users']}")
    click.echo(
        f"servers       {servers['active']} active of {servers['total']} ({servers['disabled']} disabled)"
    )
    click.echo(f"bandwidth     {band['bytes_per_s']} bytes/s over {band['nodes']} node(s) "
               f"({band['bytes']} bytes in {band['interval_s']} s)")  # fmt: skip
    for event in figures["events"]:
        at = datetime.fromtimestamp(float(event.get("at", 0)), UTC).strftime("%Y-%m-%d %H:%M:%S")
        rest = {k: v for k, v in event.items() if k not in ("type", "at")}
        click.echo(f"  {at}  {event.get('type')}  {json.dumps(rest, ensure_ascii=False)[:120]}")
