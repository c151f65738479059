"""Every dashboard page's server time on a loaded database (issue 24: < 300 ms with 100,000 dead
letters and 1,000,000 jobs).

    .venv/bin/python -m bench.dashboard [--scale 1.0] [--requests 20] [--warmups 3] [--budget-ms 300]
        [--explain MS] [--keep] [--revision head]

A fresh migrated ``cybervpn_bench_dashboard`` database, Redis db 13 (flushed) and a private vhost.
The app is the one ``worker-app serve`` builds (:func:`worker_app.web.api.create_app` over the
process runtime, ``API_TOKEN`` set), driven in process through Flask's test client after logging in
on ``/login``: the time of each request is ``perf_counter`` around the client call — routing,
views, SQL, Redis, the RabbitMQ management API for the overview, templates — with no network or
HTTP server in it.

The pages are every ``GET`` rule of the ``dashboard`` blueprint in ``app.url_map`` (domain pages
included; static files and login skipped), path parameters filled from :func:`path_values`, plus
the filtered variants of :func:`variants`. Each is requested ``--warmups`` times, then timed
``--requests`` times. Twice: on the nearly empty database (the same seed at 1/1000: 100 dead
letters, 1,000 jobs, ...) — the baseline — and on the seed at ``--scale`` (1.0: see
:data:`bench.dashboard_seed.SIZES`). Printed per page: status, median / p95 / max ms, the median
time in SQLAlchemy statements and their count, the table rows rendered, the baseline median and the
ratio to it, and PASS/FAIL of p95 against ``--budget-ms``. ``--explain MS`` adds the
``EXPLAIN (ANALYZE, BUFFERS)`` of every statement over MS ms of each page's last request.

Exits 1 when a p95 reaches the budget or a page does not answer (status ≥ 400, or a redirect to the
login); the database is dropped at the end unless ``--keep``. ``--revision 0018`` migrates only that
far: the same run without the dashboard's indexes (migration 0019).
"""

from __future__ import annotations

import argparse
import html
import math
import os
import re
import statistics
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import sqlalchemy as sa

from bench.dashboard_seed import SEARCHES, dead_letter_actors, timed_seed
from bench.db import ADMIN_URL, recreate_database

if TYPE_CHECKING:
    from flask import Flask
    from flask.testing import FlaskClient

DB_NAME = "cybervpn_bench_dashboard"
DB_URL = f"postgresql+psycopg://postgres@127.0.0.1:5432/{DB_NAME}"
REDIS_URL = "redis://127.0.0.1:6379/13"
TOKEN = "bench-dashboard-token"
BASELINE_SCALE = 0.001
#: Dashboard endpoints that are not pages to measure.
SKIPPED = ("dashboard.static", "dashboard.login")


class BenchError(Exception):
    """The run could not be carried out."""


@dataclass(frozen=True)
class Sample:
    """Real rows of the seeded database that pages are asked about."""

    dead_letter_id: int
    job_id: str
    broadcast_id: str
    actor: str
    rare_actor: str
    queue: str
    since: str = field(default_factory=lambda: (datetime.now(UTC) - timedelta(days=1)).date().isoformat())


def path_values(sample: Sample) -> dict[str, Any]:
    """A value for every path parameter a dashboard page may take; a page with a parameter not named
    here fails the run (add it here)."""
    return {
        "dead_letter_id": sample.dead_letter_id,
        "job_id": sample.job_id,
        "broadcast_id": sample.broadcast_id,
    }


#: A query value meaning "the value of this parameter in the page's own link": ``{"older": LINKED}``
#: is the second page, whatever cursor the first page's "Older" link carries.
LINKED = "<linked>"


def variants(sample: Sample) -> dict[str, list[dict[str, str]]]:
    """The query strings measured besides each page's bare URL, by endpoint: add one when a page
    gains a filter, a search or pagination. A :data:`LINKED` page must exist at the baseline's
    scale too (100 dead letters, 1,000 jobs)."""
    return {
        "dashboard.dead": [
            {"queue": sample.queue}, {"actor": sample.actor}, {"actor": sample.rare_actor},
            {"q": SEARCHES["rare"]}, {"q": SEARCHES["common"]}, {"error": SEARCHES["error"]},
            {"since": sample.since}, {"status": "all"}, {"status": "all", "q": SEARCHES["rare"]},
            {"older": LINKED}, {"status": "all", "older": LINKED},
        ],
        "dashboard.jobs": [
            {"status": "failed"}, {"status": "running"}, {"q": SEARCHES["rare"]}, {"q": "bulk"},
            {"older": LINKED}, {"status": "succeeded", "older": LINKED},
        ],
        "dashboard.queues": [{"window": "24h"}],
        "dashboard.notifications.broadcasts": [{"state": "scheduled"}, {"state": "done"}],
    }  # fmt: skip


@dataclass(frozen=True)
class Page:
    """One URL to measure and how it reads in the table (path parameters by name). With ``linked``,
    the URL is the one of the first link on ``url``'s page that has that parameter (:data:`LINKED`)."""

    label: str
    url: str
    linked: str | None = None


def pages(app: Flask, sample: Sample) -> list[Page]:
    """Every ``GET`` page of the dashboard blueprint in ``app`` (sorted by rule), each followed by its
    :func:`variants`. Raises :class:`BenchError` for a path parameter :func:`path_values` lacks."""
    adapter = app.url_map.bind("localhost")
    values, extra = path_values(sample), variants(sample)
    found: list[Page] = []
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if not rule.endpoint.startswith("dashboard.") or rule.endpoint in SKIPPED:
            continue
        if "GET" not in (rule.methods or ()):
            continue
        missing = rule.arguments - values.keys()
        if missing:
            raise BenchError(
                f"{rule.rule}: no value for {', '.join(sorted(missing))} (add it to path_values)"
            )
        url = adapter.build(rule.endpoint, {name: values[name] for name in rule.arguments})
        found.append(Page(rule.rule, url))
        for query in extra.get(rule.endpoint, []):
            linked = next((name for name, value in query.items() if value == LINKED), None)
            given = urlencode({name: value for name, value in query.items() if value != LINKED})
            label = f"{rule.rule}?{urlencode(query, safe='<>')}"
            found.append(Page(label, f"{url}?{given}" if given else url, linked))
    return found


def resolved(client: FlaskClient, page: Page) -> str:
    """The URL to measure for ``page``: its own, or that of its page's first link with
    ``page.linked`` (a second page: the first page's "Older" link)."""
    if page.linked is None:
        return page.url
    text = client.get(page.url).text
    found = re.search(rf'href="([^"]*[?&](?:amp;)?{re.escape(page.linked)}=[^"]*)"', text)
    if found is None:
        raise BenchError(
            f"{page.label}: {page.url} has no link with {page.linked}= (add rows, or fix variants)"
        )
    return html.unescape(found.group(1))


def sample_of(engine: sa.Engine, actors: dict[str, str]) -> Sample:
    """The newest dead letter, the newest bulk job (or any job) and broadcast, and the most and least
    frequent dead-letter actors of the seed (the first and last of :func:`dead_letter_actors`)."""
    ranked = dead_letter_actors(actors)
    with engine.connect() as conn:

        def one(sql: str) -> Any:
            found = conn.execute(sa.text(sql)).scalar()
            if found is None:
                raise BenchError(f"the seed wrote no row for: {sql}")
            return found

        return Sample(
            one("SELECT id FROM dead_letters WHERE status = 'dead' ORDER BY dead_at DESC LIMIT 1"),
            one("SELECT coalesce((SELECT job_id FROM jobs WHERE queue_name = 'bulk' ORDER BY created_at DESC "
                "LIMIT 1), (SELECT job_id FROM jobs ORDER BY created_at DESC LIMIT 1))"),
            one("SELECT id FROM notification_broadcasts ORDER BY created_at DESC LIMIT 1"),
            ranked[0], ranked[-1], actors[ranked[0]],
        )  # fmt: skip


class Statements:
    """Every statement the engine runs (text, parameters, seconds) since the last :meth:`reset`."""

    def __init__(self, engine: sa.Engine) -> None:
        self.seen: list[tuple[str, Any, float]] = []
        sa.event.listen(engine, "before_cursor_execute", self._before)
        sa.event.listen(engine, "after_cursor_execute", self._after)

    def reset(self) -> None:
        self.seen = []

    def _before(self, conn: sa.Connection, _cursor: Any, *_args: Any) -> None:
        conn.info.setdefault("bench_started", []).append(time.perf_counter())

    def _after(self, conn: sa.Connection, _cursor: Any, statement: str, parameters: Any, *_args: Any) -> None:
        self.seen.append((statement, parameters, time.perf_counter() - conn.info["bench_started"].pop()))


@dataclass
class Measured:
    """One page's requests: status, milliseconds of each, SQL milliseconds of each, statements and
    table rows of the last, and the last request's statements."""

    page: Page
    status: int
    ms: list[float]
    sql_ms: list[float]
    statements: int
    rows: int
    last: list[tuple[str, Any, float]] = field(repr=False)

    @property
    def median(self) -> float:
        return statistics.median(self.ms)

    @property
    def p95(self) -> float:
        """Nearest rank: the 19th of 20."""
        return sorted(self.ms)[math.ceil(0.95 * len(self.ms)) - 1]


def log_in(client: FlaskClient, token: str) -> None:
    """Log ``client`` in through the login page, as a browser does."""
    found = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text)
    answer = client.post("/login", data={"token": token, "csrf_token": found and found.group(1), "next": "/"})
    if answer.status_code != 302:
        raise BenchError(f"logging in answered {answer.status_code}")


def measure(client: FlaskClient, statements: Statements, page: Page, requests: int, warmups: int) -> Measured:
    """``warmups`` untimed requests of ``page``, then ``requests`` timed ones. Raises
    :class:`BenchError` when the page does not answer, or shows a domain's failed overview tile."""
    url = resolved(client, page)
    for _ in range(warmups):
        client.get(url)
    ms: list[float] = []
    sql_ms: list[float] = []
    for _ in range(requests):
        statements.reset()
        started = time.perf_counter()
        answer = client.get(url)
        ms.append((time.perf_counter() - started) * 1000)
        sql_ms.append(sum(seconds for *_s, seconds in statements.seen) * 1000)
    if answer.status_code >= 400 or "/login" in answer.headers.get("Location", ""):
        raise BenchError(f"{url} answered {answer.status_code}: {answer.text[:300]}")
    failed_tile = re.search(r'id="tile-(error-[^"]+)"[^>]*title="([^"]*)"', answer.text)
    if failed_tile:
        raise BenchError(f"{url}: the overview tile {failed_tile.group(1)} failed: {failed_tile.group(2)}")
    rows = len(re.findall(r"<tr\b[^>]*>\s*<td", answer.text))
    return Measured(page, answer.status_code, ms, sql_ms, len(statements.seen), rows, list(statements.seen))


def run_phase(
    app: Flask, statements: Statements, engine: sa.Engine, actors: dict[str, str], args: argparse.Namespace
) -> list[Measured]:
    """Every page of ``app`` measured on the database as seeded now."""
    client = app.test_client()
    log_in(client, TOKEN)
    listed = pages(app, sample_of(engine, actors))
    return [measure(client, statements, page, args.requests, args.warmups) for page in listed]


def table(loaded: list[Measured], baseline: dict[str, Measured], budget_ms: float) -> str:
    """The report: one line per page."""
    head = (f"{'page':<58} {'status':>6} {'median':>8} {'p95':>8} {'max':>8} {'sql':>7} {'stmts':>5} "
            f"{'rows':>5} {'base':>7} {'ratio':>6}  verdict")  # fmt: skip
    lines = [head, f"{'':<58} {'':>6} {'ms':>8} {'ms':>8} {'ms':>8} {'ms':>7} {'':>5} {'':>5} {'ms':>7}"]
    for m in loaded:
        base = baseline.get(m.page.label)
        ratio = f"{m.median / base.median:6.2f}" if base else f"{'-':>6}"
        lines.append(
            f"{m.page.label[:58]:<58} {m.status:>6} {m.median:8.1f} {m.p95:8.1f} {max(m.ms):8.1f} "
            f"{statistics.median(m.sql_ms):7.1f} {m.statements:>5} {m.rows:>5} "
            f"{base.median if base else math.nan:7.1f} {ratio}  {'PASS' if m.p95 < budget_ms else 'FAIL'}"
        )
    return "\n".join(lines)


def explain(engine: sa.Engine, loaded: list[Measured], over_ms: float) -> Iterator[str]:
    """``EXPLAIN (ANALYZE, BUFFERS)`` of each statement slower than ``over_ms`` in a page's last request."""
    with engine.connect() as conn:
        for m in loaded:
            for statement, parameters, seconds in m.last:
                if seconds * 1000 < over_ms:
                    continue
                plan = conn.exec_driver_sql(f"EXPLAIN (ANALYZE, BUFFERS) {statement}", parameters).scalars()
                yield f"\n== {m.page.label}: {seconds * 1000:.1f} ms\n{statement}\n" + "\n".join(plan)
            conn.rollback()


@contextmanager
def services() -> Iterator[str]:
    """A private vhost (deleted after) and Redis db 13 (flushed before and after); the vhost's URL."""
    import redis

    from bench.rabbit import Rabbit

    rabbit = Rabbit("amqp://guest:guest@127.0.0.1:5672", "http://127.0.0.1:15672")
    vhost = f"bench-dashboard-{uuid.uuid4().hex[:8]}"
    rabbit.create_vhost(vhost)
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    try:
        yield rabbit.url(vhost)
    finally:
        client.flushdb()
        client.close()
        rabbit.delete_vhost(vhost)


def build_app(vhost_url: str) -> Flask:
    """The app of ``worker-app serve`` over this bench's database, Redis db and vhost. Call it before
    anything imports :mod:`worker_app`, which builds the process's runtime from the environment."""
    os.environ.update(DATABASE_URL=DB_URL, REDIS_URL=REDIS_URL, RABBITMQ_URL=vhost_url, API_TOKEN=TOKEN,
                      LOG_LEVEL="WARNING", METRICS_PORT="0")  # fmt: skip
    import worker_app
    from worker_app.runtime import get_runtime
    from worker_app.web.api import create_app

    return create_app(get_runtime(), worker_app.broker)


def fire_periods() -> dict[str, int]:
    """Seconds between two fires of every job of the schedule table."""
    from scheduler.table import JOBS, parse_schedule

    now, periods = datetime.now(UTC), {}
    for job in JOBS:
        trigger = parse_schedule(job.schedule, job.name)
        if trigger is not None:
            first = trigger.get_next_fire_time(None, now)
            periods[job.name] = int((trigger.get_next_fire_time(first, first + timedelta(seconds=1)) - first)
                                    .total_seconds())  # fmt: skip
    return periods


def run(args: argparse.Namespace, stack: ExitStack) -> int:
    """Both phases (baseline, then ``--scale``) and the report; the exit status."""
    vhost_url = stack.enter_context(services())
    app = build_app(vhost_url)  # first: importing worker_app reads the environment
    recreate_database(DB_NAME)
    stack.callback(lambda: None if args.keep else drop_database())
    import worker_app
    from worker_app import migrate
    from worker_app.runtime import get_runtime

    migrate.upgrade(DB_URL, args.revision)
    stack.callback(get_runtime().database.dispose)
    statements = Statements(get_runtime().database.engine)
    actors = {name: actor.queue_name for name, actor in worker_app.broker.actors.items()}
    engine = sa.create_engine(DB_URL)
    stack.callback(engine.dispose)
    periods = fire_periods()
    measured: dict[float, list[Measured]] = {}
    for scale in (BASELINE_SCALE, args.scale):
        print(f"scale {scale:g}: {timed_seed(engine, scale, actors, periods)}", flush=True)
        measured[scale] = run_phase(app, statements, engine, actors, args)
    return report(args, engine, measured[args.scale], measured[BASELINE_SCALE])


def report(args: argparse.Namespace, engine: sa.Engine, loaded: list[Measured], base: list[Measured]) -> int:
    """Print the table (and the plans of ``--explain``); 1 when a page missed the budget."""
    print(
        f"\n{args.requests} requests per page after {args.warmups} warm-ups; base = the same page at scale "
        f"{BASELINE_SCALE:g}; ratio = median / base median; verdict: p95 < {args.budget_ms:g} ms\n"
    )
    print(table(loaded, {m.page.label: m for m in base}, args.budget_ms), flush=True)
    if args.explain is not None:
        print("\n".join(explain(engine, loaded, args.explain)))
    failed = [m.page.label for m in loaded if m.p95 >= args.budget_ms]
    verdict = f"; FAIL: {', '.join(failed)}" if failed else ""
    print(f"\n{len(loaded) - len(failed)} of {len(loaded)} pages PASS{verdict}")
    return 1 if failed else 0


def drop_database() -> None:
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)'))
    admin.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.dashboard", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--scale", type=float, default=1.0, help="1.0: 100,000 dead letters, 1,000,000 jobs")
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--warmups", type=int, default=3)
    parser.add_argument("--budget-ms", type=float, default=300.0)
    parser.add_argument("--explain", type=float, metavar="MS", help="plans of statements slower than MS")
    parser.add_argument("--keep", action="store_true", help=f"leave {DB_NAME} behind")
    parser.add_argument(
        "--revision", default="head", help="migrate only this far (0018: without 0019's indexes)"
    )
    args = parser.parse_args(argv)
    try:
        with ExitStack() as stack:
            return run(args, stack)
    except (BenchError, LookupError, sa.exc.OperationalError) as e:
        print(f"bench.dashboard: {str(e).splitlines()[0]}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
