"""Which UTC day or week a report covers: by default the last one that has ended."""

from __future__ import annotations

from datetime import date, timedelta

from worker_app import days
from worker_app.errors import PermanentError

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def parse_day(requested: str | None, *, default: date) -> date:
    """``requested`` (``YYYY-MM-DD``), or ``default``; a bad date is a :class:`PermanentError`."""
    if requested is None:
        return default
    try:
        return date.fromisoformat(requested)
    except ValueError:
        raise PermanentError(f"{requested!r} is not a date (YYYY-MM-DD)") from None


def report_day(requested: str | None, *, today: date) -> date:
    """The day of a daily report: ``requested``, which must have ended, else yesterday."""
    if requested is None:
        return today - timedelta(days=1)
    return days.finished_day(requested, today=today)


def report_week(requested: str | None, *, today: date) -> tuple[date, date]:
    """Monday and Sunday of the week holding ``requested`` (which must have ended), else of the last
    full Monday–Sunday week before ``today``."""
    this_monday = today - timedelta(days=today.weekday())
    day = parse_day(requested, default=this_monday - timedelta(days=1))
    monday = day - timedelta(days=day.weekday())
    if monday + timedelta(days=7) > today:
        raise PermanentError(f"the week of {day} (from {monday}) has not ended yet (today is {today} UTC)")
    return monday, monday + timedelta(days=6)


def week_label(monday: date) -> str:
    """``2026-W49`` (the ISO week)."""
    year, week, _ = monday.isocalendar()
    return f"{year}-W{week:02d}"


def midnight(day: date) -> float:
    """The day's start, in unix seconds."""
    return days.midnight(day).timestamp()
