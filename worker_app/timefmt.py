"""How the project writes a moment: ``2026-12-06 20:10:01`` in UTC for people (the CLI, the dashboard),
``2026-12-06T20:10:01.123Z`` for machines (the panel's API, cached JSON)."""

from __future__ import annotations

from datetime import UTC, datetime


def iso_ms(moment: datetime) -> str:
    """``moment`` in UTC as ISO 8601 with milliseconds and ``Z``, as the Remnawave panel writes times."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def utc_stamp(value: datetime | float | None) -> str:
    """``value`` (an aware datetime, or epoch seconds) as ``YYYY-MM-DD HH:MM:SS`` in UTC."""
    if value is None:
        return "-"
    moment = datetime.fromtimestamp(value, UTC) if isinstance(value, (int, float)) else value.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S")
