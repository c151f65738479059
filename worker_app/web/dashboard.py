"""The operator's dashboard: server-rendered pages in the API's Flask app (no front-end build).

Pages (templates in ``worker_app/dashboard_templates/dashboard``): queues, the landing page
(auto-refresh; open dead letters per queue; per-actor telemetry of ``?window=5m|1h|24h``, from
:mod:`worker_app.web.telemetry`), dead letters (a search of actor, error and arguments,
filters, status, 50 a page; detail with its JSON indented and folded and its traceback's failing line
marked (:mod:`worker_app.web.readable`); replay/discard one or every match), jobs (search, 50 a page,
progress bars, auto-refresh of the newest page), bulk (the ``bulk`` queue's jobs — user
operations, broadcasts, exports — with progress bars, a cancel button while they run and an
export's download link once it is ready), schedules (from ``worker-app schedules``), workers
(from their heartbeats). With ``API_TOKEN`` set the dashboard asks for it on a login page, or as the
password of HTTP basic auth; every state-changing request carries the session's CSRF token.

Replay and discard take two posts: the first (no ``confirm=1``) changes nothing and answers a page
naming how many dead letters the selection holds, whose Confirm button posts the same selection
again with ``confirm=1``. A database or RabbitMQ error is not caught here: the app's error handlers
answer it (:func:`render_error` is their HTML page for the browser).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import replace
from typing import Any

import dramatiq
from flask import Blueprint, Flask, abort, flash, redirect, render_template, request, session, url_for
from markupsafe import Markup
from pydantic import ValidationError
from werkzeug.wrappers import Response

from models import DeadLetter, Job
from models.worker import FINISHED_JOB_STATUSES, JOB_STATUSES
from worker_app import dlq as dead_letters
from worker_app import jobs as tracking
from worker_app.runtime import Runtime
from worker_app.timefmt import utc_stamp
from worker_app.web import paging, readable
from worker_app.web.models import DeadLetterQuery, JobPath, problems
from worker_app.web.moments import moment

#: Every dashboard page (domain pages included): nothing loads from anywhere but this server; the
#: only script is the dashboard's own file (``dashboard_static/moments.js``), no inline script runs;
#: styles are the page's own inline ``<style>``, charts inline SVG; forms post here only; no other
#: site frames it.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; img-src 'self' data:; "
    "form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
FILTER_FIELDS = ("q", "queue", "actor", "error", "since", "until")  # q: the search (actor, error, arguments)
SELECTION_FIELDS = ("ids", "all", *FILTER_FIELDS)  # what a replay/discard confirmation posts again
FINISHED = FINISHED_JOB_STATUSES
ACTIVE = ("queued", "running", "sending", "deferred")
"""A job in these can still be cancelled."""
DEAD_LETTER_ORDER = paging.Order(DeadLetter.dead_at, DeadLetter.id)
JOB_ORDER = paging.Order(Job.created_at, Job.job_id)
JOB_COUNT_CAP = 10_000
"""The Jobs page counts matches up to this ("of more than 10,000"): an exact count of a million rows
on every 3-second refresh would cost more than it tells."""


def _bar(job: Any) -> Markup:
    progress = job.progress or {}
    total, processed = int(progress.get("total") or 0), int(progress.get("processed") or 0)
    if not total:
        return Markup("100 %" if job.status == "succeeded" else "-")
    percent = min(100, round(processed * 100 / total))
    return Markup(
        '<progress value="{}" max="{}"></progress> <span class="percent">{} %</span> ({}/{}, {} failed)'
    ).format(processed, total, percent, processed, total, int(progress.get("failed") or 0))


def _download(job: Any) -> str | None:
    """A finished export's link (``result.url``), if it has one."""
    result = job.result if isinstance(job.result, dict) else {}
    url = result.get("url")
    return url if job.status == "succeeded" and isinstance(url, str) and url.startswith("http") else None


def _plausible_id(job_id: str) -> bool:
    """A job id that can exist, by the API's rule (no PostgreSQL error for a NUL or an overlong id)."""
    try:
        JobPath.model_validate({"job_id": job_id})
    except ValidationError:
        return False
    return True


def _keyset_page(
    database: Any, query: Any, order: paging.Order, key: Any, *, total: int | None = None,
    count_cap: int | None = None,
) -> paging.Page[Any]:  # fmt: skip
    """This request's page of ``query`` (its ``older`` / ``newer`` cursor; 400 naming a bad one)."""
    try:
        cursors = paging.cursors(request.args, key)
    except ValueError as e:
        abort(400, description=str(e))
    return paging.keyset_page(
        database, query, order, older_than=cursors["older_than"], newer_than=cursors["newer_than"],
        total=total, count_cap=count_cap,
    )  # fmt: skip


def _csrf() -> str:
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return str(session["csrf"])


def page(template: str, title: str, refresh: int = 0, **context: Any) -> str:
    """Render ``dashboard/<template>`` (extending ``dashboard/layout.html``) with the page helpers:
    ``csrf()`` (the form token), ``when`` (a moment: relative and absolute, :func:`moment`), ``stamp``
    (a plain UTC stamp, for attributes), ``bar`` (a job's progress), ``refresh``
    (seconds between reloads, 0: none)."""
    return render_template(
        f"dashboard/{template}", title=title, refresh=refresh, csrf=_csrf, when=moment, stamp=utc_stamp,
        bar=_bar, download=_download,
        rate=lambda r: "?" if r is None else f"{r:.1f}", **context,
    )  # fmt: skip


def render_error(status: int, error: str, detail: str | None = None) -> tuple[str, int]:
    """A readable HTML error page (``status``, the one-line ``error``, an optional ``detail`` and a
    link back to Queues) for a browser, where the API answers JSON. It reads neither PostgreSQL nor
    Redis and needs no login, so it renders while those are down and before anyone logs in; it needs
    a request context of an app with the dashboard registered."""
    html = render_template(
        "dashboard/error.html", title=error, refresh=0, csrf=_csrf, status=status, error=error,
        detail=detail,
    )  # fmt: skip
    return html, status


def _filters(values: Any) -> dict[str, str | None]:
    found = {name: (values.get(name) or None) for name in FILTER_FIELDS}
    found["status"] = values.get("status") or "dead"
    return found


def _filter_of(values: Any, ids: list[int]) -> dead_letters.DeadLetterFilter:
    """The page's filters, validated as the API validates them (400 naming the first bad one)."""
    given = {name: value for name, value in _filters(values).items() if value}
    try:
        query = DeadLetterQuery.model_validate(given)
    except ValidationError as e:
        first = problems(e)[0]
        abort(400, description=f"{first['loc']}: {first['msg']}")
    return query.where(ids, status=query.status)


def _selection(values: Any) -> dead_letters.DeadLetterFilter:
    """The ``dead`` letters a replay/discard form selects (ids, filters, or ``all=1``)."""
    ids = [int(i) for i in values.getlist("ids") if i.isascii() and i.isdigit() and len(i) <= 19]
    where = _filter_of(values, ids)
    if where.is_empty() and values.get("all") != "1":
        abort(400, description="nothing selected")
    return replace(where, status="dead")


def _described(values: Any, where: dead_letters.DeadLetterFilter) -> str:
    if where.ids:
        return "with id " + ", ".join(map(str, where.ids))
    named = [
        f"{'search' if name == 'q' else name}={values.get(name)}"
        for name in FILTER_FIELDS
        if values.get(name)
    ]
    return "matching " + " ".join(named) if named else ""


def _back(values: Any) -> str:
    """Where a replay/discard returns: the page it was asked from (a local path only)."""
    target = str(values.get("next") or "")
    if not target.startswith("/") or target.startswith(("//", "/\\")):
        return url_for("dashboard.dead")
    return target


def _confirmation(action: str, where: dead_letters.DeadLetterFilter, count: int) -> str:
    """The page a replay/discard post without ``confirm=1`` answers (nothing has changed): the
    count and the selection, and a form posting the same selection again with ``confirm=1``."""
    form = request.form
    kept = [(name, value) for name in SELECTION_FIELDS for value in form.getlist(name)]
    return page(
        "confirm.html", f"{action.title()} dead letters?", action=action, count=count,
        described=_described(form, where), kept=kept, back=_back(form),
    )  # fmt: skip


def create_dashboard(app: Flask, runtime: Runtime, broker: dramatiq.Broker) -> None:
    """Register the dashboard's pages on ``app``."""
    token = runtime.settings.api_token.get_secret_value() if runtime.settings.api_token else None
    app.secret_key = (
        hmac.new(token.encode(), b"cybervpn-dashboard-session", hashlib.sha256).hexdigest()
        if token
        else secrets.token_hex(32)
    )
    pages = Blueprint(
        "dashboard",
        __name__,
        template_folder="dashboard_templates",
        static_folder="dashboard_static",
        static_url_path="/dashboard-static",
    )

    @pages.after_request
    def security_headers(response: Response) -> Response:
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        return response

    _auth_pages(pages, token)
    from worker_app.web.overview import add_overview

    add_overview(pages, runtime)
    _queue_and_job_pages(pages, runtime, broker)
    _dead_letter_pages(pages, runtime, broker)
    _fleet_pages(pages, runtime, broker)
    from worker_app.domains import dashboard_extensions

    nav: list[tuple[str, str]] = []
    for add_pages in dashboard_extensions():  # the domains' own pages (register_dashboard)
        blueprint, links = add_pages(runtime)
        pages.register_blueprint(blueprint)
        nav += [(label, f"dashboard.{blueprint.name}{endpoint}") for label, endpoint in links]
    app.jinja_env.globals["domain_nav"] = nav
    app.register_blueprint(pages)


def _auth_pages(pages: Blueprint, token: str | None) -> None:
    def basic_auth_ok() -> bool:
        auth = request.authorization
        return bool(
            token and auth and auth.password and hmac.compare_digest(auth.password.encode(), token.encode())
        )

    @pages.before_request
    def guard() -> Response | None:
        if request.endpoint == "dashboard.login":
            return None
        if token is not None and not session.get("auth") and not basic_auth_ok():
            return redirect(url_for("dashboard.login", next=request.full_path))
        if request.method == "POST":
            given = request.form.get("csrf_token", "")
            if not given or not hmac.compare_digest(given, str(session.get("csrf", ""))):
                abort(400, description="bad CSRF token")
        return None

    @pages.route("/login", methods=["GET", "POST"])
    def login() -> str | Response:
        target = request.values.get("next") or url_for("dashboard.queues")
        if not target.startswith("/") or target.startswith("//"):
            target = url_for("dashboard.queues")
        if request.method == "POST":
            csrf_ok = hmac.compare_digest(request.form.get("csrf_token", ""), str(session.get("csrf", "")))
            given = request.form.get("token", "")
            if csrf_ok and token is not None and hmac.compare_digest(given.encode(), token.encode()):
                session["auth"] = True
                return redirect(target)
            flash("wrong token" if csrf_ok else "bad CSRF token", "error")
        return page("login.html", "Log in", next=target)

    @pages.post("/logout")
    def logout() -> Response:
        session.clear()
        return redirect(url_for("dashboard.login"))


def _queue_and_job_pages(pages: Blueprint, runtime: Runtime, broker: dramatiq.Broker) -> None:
    @pages.get("/")
    def home() -> Response:
        return redirect(url_for("dashboard.queues"))

    @pages.get("/jobs")
    def jobs() -> str:
        status = request.args.get("status") or None
        if status is not None and status not in JOB_STATUSES:
            abort(400, description=f"status: expected one of {', '.join(JOB_STATUSES)}")
        q = request.args.get("q") or None
        if q is not None and (len(q) > 500 or "\x00" in q):
            abort(400, description="q: expected at most 500 characters, no NUL")
        query = tracking.jobs_query(status=status, q=q, actor_names=broker.actors)
        found = _keyset_page(runtime.database, query, JOB_ORDER, paging.text_key, count_cap=JOB_COUNT_CAP)
        live = not (q or found.first > 1 or request.args.get("live") == "0")
        links = paging.links(found, request.path, request.args.items())
        return page(
            "jobs.html", "Jobs", refresh=3 if live else 0, rows=found.rows, page=found, links=links,
            live=live, q=q or "", status=status or "", statuses=JOB_STATUSES, short=readable.short,
        )  # fmt: skip

    @pages.get("/bulk")
    def bulk() -> str:
        rows = tracking.list_jobs(runtime.database, queue="bulk", limit=100)
        return page("bulk.html", "Bulk jobs and exports", refresh=3, rows=rows, active=ACTIVE)

    def find_job(job_id: str) -> Any:
        job = tracking.get_job(runtime.database, job_id) if _plausible_id(job_id) else None
        if job is None:
            abort(404, description=f"no job with id {job_id[:64]!r}")
        return job

    @pages.get("/jobs/<job_id>")
    def job_detail(job_id: str) -> str:
        job = find_job(job_id)
        refresh = 0 if job.status in FINISHED else 2
        fields = readable.row_fields(job, first=readable.JOB_FIRST)
        return page("job.html", f"Job {job_id}", refresh=refresh, job=job, fields=fields)

    @pages.get("/jobs/<job_id>/cancel")
    def cancel_confirmation(job_id: str) -> str:
        """Nothing changes here: the page asks, and its Confirm button posts."""
        return page("cancel_job.html", f"Cancel job {job_id}?", job=find_job(job_id))

    @pages.post("/jobs/<job_id>/cancel")
    def cancel(job_id: str) -> Response:
        job = find_job(job_id)
        by = f"dashboard:{request.remote_addr or '?'}"
        result = tracking.cancel_job(runtime.database, job.job_id, by=by, redis_client=runtime.redis)
        flash(f"{result.outcome.replace('_', ' ')}: {result.detail}")
        return redirect(url_for("dashboard.job_detail", job_id=job.job_id))


def _dead_letter_pages(pages: Blueprint, runtime: Runtime, broker: dramatiq.Broker) -> None:
    database = runtime.database

    @pages.get("/dead-letters")
    def dead() -> str:
        where = _filter_of(request.args, [])
        total = dead_letters.count(database, where)
        found = _keyset_page(database, where.select(), DEAD_LETTER_ORDER, paging.bigint_key, total=total)
        return page(
            "dead_letters.html", "Dead letters", rows=found.rows, page=found, total=total,
            links=paging.links(found, request.path, request.args.items()), filters=_filters(request.args),
            fields=FILTER_FIELDS, statuses=dead_letters.STATUSES, preview=readable.preview,
            short=readable.short,
        )  # fmt: skip

    @pages.get("/dead-letters/<int:dead_letter_id>")
    def dead_detail(dead_letter_id: int) -> str:
        found = dead_letters.listing(
            database, dead_letters.DeadLetterFilter(ids=(dead_letter_id,), status="all"), 1
        )
        if not found:
            abort(404, description=f"no dead letter with id {dead_letter_id}")
        fields = readable.row_fields(found[0], first=readable.DEAD_LETTER_FIRST, skip=("id", "traceback"))
        text = found[0].traceback
        traceback = readable.highlight_traceback(text) if text else Markup("(no traceback)")
        return page(
            "dead_letter.html", f"Dead letter {dead_letter_id}", fields=fields, traceback=traceback,
            status=found[0].status, id=dead_letter_id,
        )  # fmt: skip

    @pages.post("/dead-letters/replay")
    def replay() -> str | Response:
        where = _selection(request.form)
        if request.form.get("confirm") != "1":
            return _confirmation("replay", where, dead_letters.count(database, where))
        report = dead_letters.replay(database, broker, where)
        skipped = f"; {len(report.skipped)} skipped" if report.skipped else ""
        flash(f"replayed {report.replayed} of {report.matched} dead letter(s){skipped}")
        return redirect(_back(request.form))

    @pages.post("/dead-letters/discard")
    def discard() -> str | Response:
        where = _selection(request.form)
        if request.form.get("confirm") != "1":
            return _confirmation("discard", where, dead_letters.count(database, where))
        flash(f"discarded {dead_letters.discard(database, where)} dead letter(s)")
        return redirect(_back(request.form))


def _fleet_pages(pages: Blueprint, runtime: Runtime, broker: dramatiq.Broker) -> None:
    settings = runtime.settings

    @pages.get("/schedules")
    def schedules() -> str:
        from scheduler.status import current_status
        from worker_app.errors import ConfigurationError

        try:
            status = current_status(settings, broker.actors)
        except ConfigurationError as e:  # a bad SCHEDULE_* or <JOB>_BATCH_LIMIT in this host's env
            abort(500, description=f"the schedule configuration is invalid: {e}")
        return page("schedules.html", "Schedules", refresh=10, status=status)

    @pages.get("/alerts")
    def alerts() -> str:
        from worker_app.alerts import recent_alerts
        from worker_app.open_alerts import OpenAlerts

        return page(
            "alerts.html", "Alerts", refresh=10, open_alerts=OpenAlerts(runtime.redis).all(),
            alerts=recent_alerts(runtime.redis, 100), now=time.time(),
        )  # fmt: skip

    @pages.get("/workers")
    def workers() -> str:
        from worker_app.workers import alive_workers

        now = time.time()
        return page(
            "workers.html", "Workers", refresh=5, workers=alive_workers(runtime.redis),
            ago=lambda t: f"{max(0.0, now - t):.0f} s ago",
        )  # fmt: skip
