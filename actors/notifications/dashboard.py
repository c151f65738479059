"""The notifications domain's dashboard page (registered with
:func:`worker_app.domains.register_dashboard`): broadcasts.

* ``GET /broadcasts?state=`` — broadcasts by state (default: every state), the latest start first,
  with their totals; a scheduled one has a *Send now* button, one not settled yet a *Cancel…* link
  (the dashboard's job cancellation: a broadcast's id is its job id);
* ``POST /broadcasts/<id>/send-now`` — a scheduled broadcast starts now (a message says when it was
  not scheduled any more).
"""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, request, url_for
from werkzeug.wrappers import Response

from actors.notifications.scheduled import STATES, get_broadcast_row, list_broadcasts, send_now
from worker_app.runtime import Runtime
from worker_app.web.dashboard import page

#: The most broadcasts the page lists.
PAGE_ROWS = 200


def add_pages(runtime: Runtime) -> tuple[Blueprint, list[tuple[str, str]]]:
    pages = Blueprint("notifications", __name__, template_folder="dashboard_templates")

    @pages.get("/broadcasts")
    def broadcasts() -> str:
        state = request.args.get("state") or None
        if state is not None and state not in STATES:
            abort(400, description=f"state: expected one of {', '.join(STATES)}")
        rows = list_broadcasts(runtime.database, state, PAGE_ROWS)
        return page("notifications/broadcasts.html", "Broadcasts", refresh=5, rows=rows, state=state,
                    states=STATES)  # fmt: skip

    @pages.post("/broadcasts/<broadcast_id>/send-now")
    def broadcast_send_now(broadcast_id: str) -> Response:
        if len(broadcast_id) > 64 or not broadcast_id.isprintable():
            abort(404, description="no such broadcast")
        moved = send_now(runtime.database, broadcast_id)
        if moved is not None:
            flash(f"broadcast {broadcast_id} sends now: {moved} row(s) due")
        else:
            row = get_broadcast_row(runtime.database, broadcast_id)
            if row is None:
                abort(404, description=f"no broadcast with id {broadcast_id!r}")
            flash(f"broadcast {broadcast_id} is {row.state}, not scheduled: nothing changed", "error")
        return redirect(url_for(".broadcasts"))

    return pages, [("Broadcasts", ".broadcasts")]
