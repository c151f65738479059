"""The operator's dashboard: server-rendered pages in the API's Flask app (no front-end build).

Pages (templates in ``worker_app/dashboard_templates/dashboard``): queues (auto-refresh), dead letters
(filters, detail with traceback, replay/discard one or every match), jobs (progress bars,
auto-refresh), schedules (from ``worker-app schedules``), workers (from their heartbeats). With
``API_TOKEN`` set the dashboard asks for it on a login page, or as the password of HTTP basic
auth; every state-changing request carries the session's CSRF token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from datetime import UTC, datetime
from typing import Any

import dramatiq
from flask import Blueprint, Flask, abort, flash, redirect, render_template, request, session, url_for
from markupsafe import Markup
from werkzeug.wrappers import Response

from worker_app import dlq as dead_letters
from worker_app import jobs as tracking
from worker_app.runtime import Runtime

FILTER_FIELDS = ("queue", "actor", "error", "since", "until")
FINISHED = ("succeeded", "failed", "dead")


def _when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _bar(job: Any) -> Markup:
    progress = job.progress or {}
    total, processed = int(progress.get("total") or 0), int(progress.get("processed") or 0)
    if not total:
        return Markup("100 %" if job.status == "succeeded" else "-")
    percent = min(100, round(processed * 100 / total))
    return Markup(
        '<progress value="{}" max="{}"></progress> <span class="percent">{} %</span> ({}/{}, {} failed)'
    ).format(processed, total, percent, processed, total, int(progress.get("failed") or 0))


def _csrf() -> str:
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return str(session["csrf"])


def _page(template: str, title: str, refresh: int = 0, **context: Any) -> str:
    return render_template(
        f"dashboard/{template}", title=title, refresh=refresh, csrf=_csrf, when=_when, bar=_bar,
        rate=lambda r: "?" if r is None else f"{r:.1f}", **context,
    )  # fmt: skip


def _filters(values: Any) -> dict[str, str | None]:
    return {name: (values.get(name) or None) for name in FILTER_FIELDS}


def _filter_of(values: Any, ids: list[int]) -> dead_letters.DeadLetterFilter:
    try:
        return dead_letters.filter_from({**_filters(values), "ids": ids})
    except ValueError as e:
        abort(400, description=str(e))


def _selection(values: Any) -> dead_letters.DeadLetterFilter:
    where = _filter_of(values, [int(i) for i in values.getlist("ids") if str(i).isdigit()])
    if where.is_empty() and values.get("all") != "1":
        abort(400, description="nothing selected")
    return where


def create_dashboard(app: Flask, runtime: Runtime, broker: dramatiq.Broker) -> None:
    """Register the dashboard's pages on ``app``."""
    token = runtime.settings.api_token.get_secret_value() if runtime.settings.api_token else None
    app.secret_key = (
        hmac.new(token.encode(), b"cybervpn-dashboard-session", hashlib.sha256).hexdigest()
        if token
        else secrets.token_hex(32)
    )
    pages = Blueprint("dashboard", __name__, template_folder="dashboard_templates")
    _auth_pages(pages, token)
    _queue_and_job_pages(pages, runtime)
    _dead_letter_pages(pages, runtime, broker)
    _fleet_pages(pages, runtime, broker)
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
        return _page("login.html", "Log in", next=target)

    @pages.post("/logout")
    def logout() -> Response:
        session.clear()
        return redirect(url_for("dashboard.login"))


def _queue_and_job_pages(pages: Blueprint, runtime: Runtime) -> None:
    @pages.get("/")
    def home() -> Response:
        return redirect(url_for("dashboard.queues"))

    @pages.get("/queues")
    def queues() -> str:
        from worker_app.queues import queue_report

        return _page("queues.html", "Queues", refresh=5, report=queue_report(runtime.settings))

    @pages.get("/jobs")
    def jobs() -> str:
        rows = tracking.list_jobs(runtime.database, status=request.args.get("status") or None, limit=100)
        return _page("jobs.html", "Jobs", refresh=3, rows=rows)

    @pages.get("/jobs/<job_id>")
    def job_detail(job_id: str) -> str:
        job = tracking.get_job(runtime.database, job_id)
        if job is None:
            abort(404, description=f"no job with id {job_id}")
        refresh = 0 if job.status in FINISHED else 2
        return _page("job.html", f"Job {job_id}", refresh=refresh, job=job, fields=tracking.as_dict(job))


def _dead_letter_pages(pages: Blueprint, runtime: Runtime, broker: dramatiq.Broker) -> None:
    database = runtime.database

    @pages.get("/dead-letters")
    def dead() -> str:
        where = _filter_of(request.args, [])
        return _page(
            "dead_letters.html", "Dead letters", rows=dead_letters.listing(database, where, 200),
            total=dead_letters.count(database, where), filters=_filters(request.args), fields=FILTER_FIELDS,
        )  # fmt: skip

    @pages.get("/dead-letters/<int:dead_letter_id>")
    def dead_detail(dead_letter_id: int) -> str:
        found = dead_letters.listing(
            database, dead_letters.DeadLetterFilter(ids=(dead_letter_id,), status="all"), 1
        )
        if not found:
            abort(404, description=f"no dead letter with id {dead_letter_id}")
        fields = dead_letters.as_dict(found[0])
        traceback = fields.pop("traceback") or "(no traceback)"
        return _page(
            "dead_letter.html", f"Dead letter {dead_letter_id}", fields=fields, traceback=traceback,
            status=found[0].status, id=dead_letter_id,
        )  # fmt: skip

    @pages.post("/dead-letters/replay")
    def replay() -> Response:
        report = dead_letters.replay(database, broker, _selection(request.form))
        skipped = f"; {len(report.skipped)} skipped" if report.skipped else ""
        flash(f"replayed {report.replayed} of {report.matched} dead letter(s){skipped}")
        return redirect(request.referrer or url_for("dashboard.dead"))

    @pages.post("/dead-letters/discard")
    def discard() -> Response:
        flash(f"discarded {dead_letters.discard(database, _selection(request.form))} dead letter(s)")
        return redirect(request.referrer or url_for("dashboard.dead"))


def _fleet_pages(pages: Blueprint, runtime: Runtime, broker: dramatiq.Broker) -> None:
    settings = runtime.settings

    @pages.get("/schedules")
    def schedules() -> str:
        from scheduler.status import current_status

        return _page(
            "schedules.html", "Schedules", refresh=10, status=current_status(settings, broker.actors)
        )

    @pages.get("/workers")
    def workers() -> str:
        from worker_app.workers import alive_workers

        now = time.time()
        return _page(
            "workers.html", "Workers", refresh=5, workers=alive_workers(runtime.redis),
            ts=lambda t: datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S"),
            ago=lambda t: f"{max(0.0, now - t):.0f} s ago",
        )  # fmt: skip
