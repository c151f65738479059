"""``GET /api/v1/telemetry/summary[?window=5m|1h|24h]``: per-actor started, completed, failed,
retried and p50/p95 duration (ms) over the last 5 min, 1 h and 24 h, fleet-wide, from the Redis
buckets every worker process writes (:mod:`worker_app.telemetry`, whose docstring says what each
count means and where each window's edge lies). Bearer token as every ``/api/`` route; 503 when
Redis is unreachable.

Also the dashboard's per-actor table and throughput chart (:func:`dashboard_table`), from the same
buckets.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any, Literal

import redis
from flask import Response, jsonify
from flask_openapi3.openapi import OpenAPI
from markupsafe import Markup
from pydantic import BaseModel, Field

from worker_app import queue_history, telemetry
from worker_app.outages import outage_of
from worker_app.runtime import Runtime
from worker_app.timefmt import iso_ms
from worker_app.web.charts import line_chart, sparkline
from worker_app.web.models import Strict

PATH = "/api/v1/telemetry/summary"
WindowName = Literal["5m", "1h", "24h"]
DASHBOARD_DEFAULT_WINDOW: WindowName = "5m"


class ActorTelemetry(BaseModel):
    """One actor's attempts in a window (or all actors' together) and their durations."""

    started: int = Field(description="attempts begun (a skipped message is not counted)")
    completed: int = Field(description="attempts that succeeded")
    failed: int = Field(description="messages failed for good: dead-lettered, no further attempt")
    retried: int = Field(description="attempts that failed with another attempt scheduled")
    p50_ms: float | None = Field(description="median duration of the attempts that ended; null if none")
    p95_ms: float | None = Field(description="95th percentile duration; null if none")
    wait_p95_ms: float | None = Field(
        description="95th percentile of the time messages waited in the queue before their attempt began "
        "(from enqueue, or from the eta of a delayed message or a retry); null if none"
    )


class WindowTelemetry(BaseModel):
    since: str = Field(description="start of the window's oldest bucket (ISO 8601, UTC)")
    bucket_s: int = Field(description="the buckets' length: 60 (5m, 1h) or 3600 (24h)")
    actors: dict[str, ActorTelemetry]
    totals: ActorTelemetry


class TelemetrySummary(BaseModel):
    windows: dict[WindowName, WindowTelemetry] = Field(description="by window: 5m, 1h, 24h")
    generated_at: str = Field(description="when this was read (ISO 8601, UTC)")


class TelemetryQuery(Strict):
    window: WindowName | None = Field(default=None, description="only this window (default: all three)")


def summary_document(client: redis.Redis, windows: tuple[str, ...]) -> TelemetrySummary:
    """The summary of ``windows`` as the API answers it; raises :class:`redis.RedisError`."""
    now = datetime.now(UTC)
    found = telemetry.summary(client, windows, now.timestamp())
    return TelemetrySummary.model_validate(
        {"windows": {name: _window(w) for name, w in found.items()}, "generated_at": iso_ms(now)}
    )


def _window(found: telemetry.WindowSummary) -> WindowTelemetry:
    return WindowTelemetry(
        since=iso_ms(datetime.fromtimestamp(found.since, UTC)),
        bucket_s=found.window.bucket_s,
        actors={actor: ActorTelemetry.model_validate(c.as_dict()) for actor, c in found.actors.items()},
        totals=ActorTelemetry.model_validate(found.totals.as_dict()),
    )


def add_telemetry_routes(app: OpenAPI, runtime: Runtime) -> None:
    """Register ``GET /api/v1/telemetry/summary`` on the API app."""
    from worker_app.web.api import BEARER, statuses

    @app.get(PATH, responses=statuses(200, TelemetrySummary, 401, 422), security=BEARER)
    def telemetry_summary(query: TelemetryQuery) -> Response:
        """Per actor, fleet-wide: attempts started, completed, retried, failed for good, and p50/p95
        duration (ms), over the last 5 minutes, hour and 24 hours (or only ``window``)."""
        windows = (query.window,) if query.window else tuple(telemetry.WINDOWS)
        return jsonify(summary_document(runtime.redis, windows).model_dump(mode="json"))


SORTS = (
    "actor",
    "started",
    "completed",
    "retried",
    "failed",
    "failure_rate",
    "p50_ms",
    "p95_ms",
    "wait_p95_ms",
    "last_error",
)
"""The per-actor table's columns it can be sorted by (``?sort=``; ``actor`` ascending, the others
the largest, or the newest error, first)."""


def dashboard_table(client: redis.Redis, window: str, sort: str = "actor") -> dict[str, Any]:
    """What the dashboard's overview shows of ``window``: ``{"window", "windows", "sort", "rows",
    "totals", "recent"}`` — ``rows`` one per actor (its :meth:`~worker_app.telemetry.Counts.as_dict`
    with ``actor``, ``failure_rate`` (attempts that raised, of those that ended; ``None`` if none
    ended) and ``last_error`` (``(unix s, text)`` or ``None``)) sorted by ``sort``; ``recent`` the
    last 5 minutes' totals (the overview's tiles) — or ``"error"`` (one line) instead of the figures
    when Redis cannot be read: the page still renders its other parts."""
    context: dict[str, Any] = {"window": window, "windows": tuple(telemetry.WINDOWS), "sort": sort}
    try:
        found = telemetry.summary(client, dict.fromkeys((window, "5m")))
        errors = telemetry.last_errors(client)
        rows = [
            {"actor": actor, **counts.as_dict(), "failure_rate": _failure_rate(counts),
             "last_error": errors.get(actor)}
            for actor, counts in found[window].actors.items()
        ]  # fmt: skip
        context["rows"] = _sorted(rows, sort)
        context["totals"] = found[window].totals.as_dict()
        context["totals"]["failure_rate"] = _failure_rate(found[window].totals)
        context["recent"] = found["5m"].totals.as_dict()
        context["chart_window"], context["chart"] = throughput_chart(client, window)
    except redis.RedisError as e:
        context["error"] = redis_error(e)
    return context


def _failure_rate(counts: telemetry.Counts) -> float | None:
    ended = counts.completed + counts.retried + counts.failed
    return (counts.retried + counts.failed) / ended if ended else None


def _sorted(rows: list[dict[str, Any]], sort: str) -> list[dict[str, Any]]:
    if sort == "actor":
        return sorted(rows, key=lambda row: str(row["actor"]))
    if sort == "last_error":
        return sorted(rows, key=lambda row: -(row["last_error"] or (0.0, ""))[0])
    return sorted(rows, key=lambda row: (row[sort] is None, -(row[sort] or 0), row["actor"]))


def throughput_chart(client: redis.Redis, window: str) -> tuple[str, Markup]:
    """Completed, retried and failed attempts of every actor per bucket, as an SVG line chart: per
    minute over the last hour (windows ``5m`` and ``1h``), per hour over the last day (``24h``).
    Raises :class:`redis.RedisError`."""
    chart_window = "24h" if window == "24h" else "1h"
    points = telemetry.series(client, chart_window)
    totals = [point.totals() for point in points]
    chart = line_chart(
        "throughput-chart",
        [point.start for point in points],
        {
            "completed": [t.completed for t in totals],
            "retried": [t.retried for t in totals],
            "failed": [t.failed for t in totals],
        },
        time_format="%d %b %H:00" if chart_window == "24h" else "%H:%M",
    )
    return chart_window, chart


def depth_charts(client: redis.Redis, now: float | None = None) -> dict[str, Any]:
    """The last hour of queue depths (:mod:`worker_app.queue_history`), up to the newest minute
    sampled: ``chart``, every queue's ready, delayed and dead messages together per minute;
    ``sparklines``, each queue's ready + delayed per minute; ``sampled``, whether any minute has a
    sample. ``error`` (one line) instead when Redis cannot be read."""
    minute = int((time.time() if now is None else now) // 60)
    try:
        samples = queue_history.history(client, range(minute - 60, minute + 1))
    except redis.RedisError as e:
        return {"error": redis_error(e)}
    # this minute's sample is taken some time within it: until then the hour ends a minute earlier
    samples = samples[1:] if samples[-1].depths else samples[:-1]
    chart = line_chart(
        "depth-chart",
        [sample.minute * 60 for sample in samples],
        {state: [sample.total(state) or 0 for sample in samples] for state in queue_history.STATES},
        gauge=True,
    )
    sparklines = {}
    for queue in sorted({queue for sample in samples for queue in sample.depths}):
        values = [
            sample.depths[queue].get("ready", 0) + sample.depths[queue].get("delayed", 0)
            if queue in sample.depths
            else None
            for sample in samples
        ]
        latest = next((v for v in reversed(values) if v is not None), 0)
        sparklines[queue] = sparkline(
            values, title=f"{queue}: ready + delayed, per minute over the last hour (latest {latest})"
        )
    return {"chart": chart, "sparklines": sparklines, "sampled": any(sample.depths for sample in samples)}


def redis_error(e: redis.RedisError) -> str:
    """The one line a page shows for a Redis failure."""
    outage = outage_of(e)
    return outage.line() if outage else f"Redis: {type(e).__name__}: {e}"
