"""``worker-app reports ...``: the admin reports, printed here instead of sent."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from worker_app.runtime import get_runtime


@click.group()
def reports() -> None:
    """The daily and weekly admin reports (Telegram HTML)."""


@reports.command("preview")
@click.argument("which", type=click.Choice(["daily", "weekly"]))
@click.option("--date", "day", metavar="YYYY-MM-DD",
              help="daily: the UTC day (default: yesterday); weekly: any day of the Monday–Sunday week "
              "(default: the last full week).")  # fmt: skip
def preview(which: str, day: str | None) -> None:
    """Print the report as it would be sent — each message in Telegram HTML, with its length — without
    sending anything. Exit 2 for a date that is not a finished UTC day (or week)."""
    from actors.reports.daily import daily_report
    from actors.reports.markup import visible_length
    from actors.reports.periods import report_day, report_week
    from actors.reports.sections import Options
    from actors.reports.weekly import weekly_report
    from worker_app.errors import PermanentError

    runtime = get_runtime()
    now = datetime.now(UTC)
    options = Options.from_settings(runtime.settings)
    try:
        if which == "daily":
            first = report_day(day, today=now.date())
            report = daily_report(
                runtime.redis, runtime.database, first, now=now.timestamp(), options=options
            )
        else:
            first, _ = report_week(day, today=now.date())
            report = weekly_report(
                runtime.redis, runtime.database, first, now=now.timestamp(), options=options
            )
    except PermanentError as e:
        raise click.BadParameter(str(e), param_hint="--date") from None
    for n, part in enumerate(report.parts, 1):
        click.echo(f"--- {which} report {report.period}, message {n}/{len(report.parts)} "
                   f"({visible_length(part)} characters) ---")  # fmt: skip
        click.echo(part)
    click.echo(f"{len(report.parts)} message(s); not sent (send_{which}_report sends it to "
               f"{len(runtime.settings.admin_telegram_ids)} admin(s))", err=True)  # fmt: skip
