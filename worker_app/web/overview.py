"""The dashboard's landing page (``/queues``): tiles that say at a glance whether the fleet is healthy
and where it is not, the queues, charts of the last hour and the per-actor table.

Tiles come from the platform (:func:`platform_tiles`) and from the domains
(:func:`worker_app.domains.register_overview`); a tile whose figure means trouble is drawn red.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import redis
import sqlalchemy as sa
from flask import Blueprint, abort, flash, redirect, request, url_for
from werkzeug.wrappers import Response

from worker_app import pauses
from worker_app.policies import DOMAINS
from worker_app.queues import QueueReport
from worker_app.runtime import Runtime
from worker_app.telemetry import WINDOWS
from worker_app.web.moments import ago

if TYPE_CHECKING:
    import psycopg

    from worker_app.workers import WorkerInfo

log = logging.getLogger(__name__)
WAIT_TROUBLE_MS = 60_000.0
"""Time-in-queue p95 (last 5 min) from which the tile is red: messages wait over a minute to start."""


@dataclass(frozen=True)
class Tile:
    """One figure on the overview: ``label`` (``Nodes``), ``value`` (``2 of 12 down``), ``trouble``
    (drawn red), ``href`` (where a click leads, a dashboard path), ``detail`` (a line under the
    value). ``key`` names it in the page (``id="tile-<key>"``)."""

    key: str
    label: str
    value: str
    trouble: bool = False
    href: str | None = None
    detail: str | None = None


def _unreadable(key: str, label: str, error: Exception) -> Tile:
    """A red tile naming why its figure could not be read (Redis or PostgreSQL down)."""
    from worker_app.web.telemetry import redis_error

    why = redis_error(error) if isinstance(error, redis.RedisError) else f"{type(error).__name__}: {error}"
    return Tile(key, label, "unknown", True, None, why.splitlines()[0][:200])


def _guarded(key: str, label: str, build: Callable[[], Tile]) -> Tile:
    """``build()``, or :func:`_unreadable` when its source is down."""
    try:
        return build()
    except (redis.RedisError, sa.exc.SQLAlchemyError, OSError) as e:
        return _unreadable(key, label, e)


def platform_tiles(
    runtime: Runtime, report: QueueReport, recent: dict[str, Any] | None, paused: Collection[str] = ()
) -> list[Tile]:
    """The fleet's own tiles: workers alive, scheduler leader, Telegram breaker, open alerts, open dead
    letters, failed and time-in-queue p95 over the last 5 minutes (``recent``: the 5 min totals, or
    ``None`` when telemetry could not be read). A queue ``paused`` on purpose is not missing a consumer."""
    from worker_app.workers import alive_workers

    idle = [q.queue for q in report.queues if stalled(q, paused)]
    try:
        workers = alive_workers(runtime.redis)  # read once: the workers and the breaker tiles
        tiles = [_workers_tile(workers, idle), _breaker_tile(workers)]
    except redis.RedisError as e:
        breaker = Tile("telegram-breaker", "Telegram breaker", "unknown", True, None, "heartbeats unreadable")
        tiles = [_unreadable("workers", "Workers alive", e), breaker]
    tiles[1:1] = [_guarded("leader", "Scheduler leader", lambda: _leader_tile(runtime))]
    tiles += [_guarded("alerts", "Open alerts", lambda: _alerts_tile(runtime)), _dead_letters_tile(report)]
    if recent is None:
        tiles.append(Tile("failed", "Failed (5 min)", "unknown", True, None, "telemetry unavailable"))
    else:
        failed, retried = int(recent["failed"]), int(recent["retried"])
        tiles.append(Tile("failed", "Failed (5 min)", str(failed), failed > 0, "/dead-letters",
                          f"{retried} retried, {recent['completed']} completed"))  # fmt: skip
        wait = recent.get("wait_p95_ms")
        tiles.append(Tile("wait", "Time in queue p95 (5 min)", "-" if wait is None else _duration(wait),
                          wait is not None and wait >= WAIT_TROUBLE_MS, None,
                          "enqueue (or eta) to start, all actors"))  # fmt: skip
    return tiles


def _workers_tile(workers: list[WorkerInfo], idle: list[str]) -> Tile:
    threads = sum(w.threads for w in workers)
    detail = f"no consumer for {', '.join(idle)}" if idle else f"{threads} threads"
    trouble = not workers or bool(idle)
    return Tile("workers", "Workers alive", str(len(workers)), trouble, "/workers", detail)


def _breaker_tile(workers: list[WorkerInfo]) -> Tile:
    states = [w.breakers["telegram"] for w in workers if w.breakers and "telegram" in w.breakers]
    tripped = [s for s in states if s != "closed"]
    if not states:
        return Tile("telegram-breaker", "Telegram breaker", "closed", detail="no worker has sent yet")
    value = "closed" if not tripped else ("open" if "open" in tripped else "half-open")
    detail = f"{len(tripped)} of {len(states)} workers" if tripped else f"on {len(states)} workers"
    return Tile("telegram-breaker", "Telegram breaker", value, bool(tripped), "/workers", detail)


def _alerts_tile(runtime: Runtime) -> Tile:
    from worker_app.open_alerts import OpenAlerts

    found = OpenAlerts(runtime.redis).all()
    detail = "; ".join(a.title for a in found[:2]) + (f" (+{len(found) - 2})" if len(found) > 2 else "")
    return Tile("alerts", "Open alerts", str(len(found)), bool(found), "/alerts", detail or None)


def stalled(queue: Any, paused: Collection[str] = ()) -> bool:
    """A domain queue with messages waiting and no consumer, not paused on purpose."""
    waiting = queue.ready or queue.delayed
    return queue.queue in DOMAINS and queue.queue not in paused and queue.consumers == 0 and bool(waiting)


def _leader_tile(runtime: Runtime) -> Tile:
    from scheduler.leader import holders

    with runtime.database.engine.connect() as conn:
        raw = cast("psycopg.Connection[Any]", conn.connection.driver_connection)  # psycopg 3 under SQLAlchemy
        sessions = holders(raw, runtime.settings.scheduler_lock_name)
    leader = next((h for h in sessions if h.leader), None)
    standbys = len(sessions) - (leader is not None)
    if leader is None:
        why = f"{standbys} standby, no job fires" if standbys else "no scheduler is running"
        return Tile("leader", "Scheduler leader", "none", True, "/schedules", why)
    name = leader.application_name.split(" ", 1)[-1] or leader.application_name
    since = ago(time.time() - leader.backend_start.timestamp())
    return Tile("leader", "Scheduler leader", name, False, "/schedules", f"since {since}, {standbys} standby")


def _dead_letters_tile(report: QueueReport) -> Tile:
    counted = [q for q in report.queues if q.dead_letters]
    total = sum(q.dead_letters or 0 for q in counted)
    unknown = any(q.dead_letters is None for q in report.queues)
    counted.sort(key=lambda q: -(q.dead_letters or 0))
    detail = ", ".join(f"{q.queue} {q.dead_letters}" for q in counted)
    return Tile("dead-letters", "Open dead letters", "?" if unknown and not total else str(total), total > 0,
                "/dead-letters", detail or None)  # fmt: skip


def _duration(ms: float) -> str:
    if ms < 1000:
        return f"{ms:.0f} ms"
    return f"{ms / 1000:.1f} s" if ms < 60_000 else f"{ms / 60_000:.1f} min"


def domain_tiles(runtime: Runtime) -> list[Tile]:
    """Every domain's tiles (:func:`worker_app.domains.register_overview`); a domain whose function
    raises shows one trouble tile naming the error instead of its own."""
    from worker_app.domains import overview_extensions

    tiles: list[Tile] = []
    for path, function in overview_extensions():
        try:
            tiles += function(runtime)
        except Exception as e:  # one domain's broken tile must not take the landing page down
            log.warning("overview tiles of %s failed: %s", path, e)
            name = path.partition(":")[0].split(".")[-2 if path.startswith("actors.") else -1]
            tiles.append(Tile(f"error-{name}", name, "unavailable", True, None, f"{type(e).__name__}: {e}"))
    return tiles


def add_overview(pages: Blueprint, runtime: Runtime) -> None:
    """Register ``GET /queues`` (the landing page) and the queues' pause/resume buttons."""
    from worker_app.web.dashboard import page

    @pages.get("/queues")
    def queues() -> str:
        from worker_app.queues import queue_report
        from worker_app.web.telemetry import DASHBOARD_DEFAULT_WINDOW, SORTS, dashboard_table, depth_charts

        window = request.args.get("window") or DASHBOARD_DEFAULT_WINDOW
        if window not in WINDOWS:
            abort(400, description=f"window: expected one of {', '.join(WINDOWS)}")
        sort = request.args.get("sort") or "actor"
        if sort not in SORTS:
            abort(400, description=f"sort: expected one of {', '.join(SORTS)}")
        report = queue_report(runtime.settings, database=runtime.database)
        telemetry = dashboard_table(runtime.redis, window, sort)
        depths = depth_charts(runtime.redis)
        paused = pauses.paused_queues(runtime.database)
        tiles = platform_tiles(runtime, report, telemetry.get("recent"), paused) + domain_tiles(runtime)
        return page("queues.html", "Overview", refresh=5, report=report, telemetry=telemetry, paused=paused,
                     domains=DOMAINS, depths=depths, tiles=tiles, stalled=stalled)  # fmt: skip

    @pages.post("/queues/<queue>/<any(pause, resume):action>")
    def pause_or_resume(queue: str, action: str) -> Response:
        by = f"dashboard:{request.remote_addr or '?'}"
        try:
            if action == "pause":
                reason = (request.form.get("reason") or "").strip()[:500] or None
                changed = pauses.pause(runtime.database, queue, by=by, reason=reason)
            else:
                changed = pauses.resume(runtime.database, queue, by=by)
        except pauses.NotADomainQueue as e:
            abort(404, description=str(e))
        state = "paused" if action == "pause" else "resumed"
        flash(
            f"{queue} {state}: workers follow within a few seconds"
            if changed
            else f"{queue} was {state} already"
        )
        return redirect(url_for("dashboard.queues"))
