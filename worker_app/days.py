"""UTC days, as the aggregates and reports of every domain count them.

* :data:`DayArgument` — an actor's ``day`` argument (``YYYY-MM-DD``), checked by the worker and the
  API before the actor runs;
* :func:`midnight` — a day's start (UTC);
* :func:`finished_day` — a ``YYYY-MM-DD`` text that names a day which has ended, or one clear error;
* :func:`store_days` — per-day JSON summaries written to their keys with a TTL, in one round trip.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any

import redis
from pydantic import Field

from worker_app.errors import PermanentError

#: An actor's ``day`` argument, checked by the worker and the API before the actor runs.
DayArgument = Annotated[str, Field(pattern=r"^\d{4}-\d{2}-\d{2}$")]


def midnight(day: date) -> datetime:
    """The start of ``day`` in UTC."""
    return datetime.combine(day, time(), tzinfo=UTC)


def day_start(now: float) -> datetime:
    """The start (UTC) of the UTC day holding the unix time ``now``."""
    return midnight(datetime.fromtimestamp(now, UTC).date())


def finished_day(value: str, *, today: date, name: str = "") -> date:
    """``value`` (``YYYY-MM-DD``) as a date before ``today``; a :class:`PermanentError` naming it
    otherwise (``name`` goes before the value in the message, e.g. ``"day "``)."""
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise PermanentError(f"{name}{value!r} is not a date (YYYY-MM-DD)") from None
    if day >= today:
        raise PermanentError(f"{name}{day} has not ended yet (today is {today} UTC)")
    return day


def store_days(
    client: redis.Redis, key_of: Callable[[date], str], summaries: Iterable[Mapping[str, Any]], *,
    ttl: timedelta,
) -> None:  # fmt: skip
    """Write each summary (which names its ``date``) as JSON to ``key_of(date)``, overwriting, with
    ``ttl``; one pipeline."""
    with client.pipeline(transaction=False) as pipe:
        for summary in summaries:
            pipe.set(key_of(date.fromisoformat(summary["date"])), json.dumps(summary), ex=ttl)
        pipe.execute()
