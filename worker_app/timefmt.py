"""How the CLI and the dashboard print a moment: ``2026-12-06 20:10:01`` in UTC, ``-`` for none."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_stamp(value: datetime | float | None) -> str:
    """``value`` (an aware datetime, or epoch seconds) as ``YYYY-MM-DD HH:MM:SS`` in UTC."""
    if value is None:
        return "-"
    moment = datetime.fromtimestamp(value, UTC) if isinstance(value, (int, float)) else value.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S")
