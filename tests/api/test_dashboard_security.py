"""Every dashboard route, found from the app's URL map (so a page a domain adds is covered too):
without a login each one redirects to the login page; with one, each page without path parameters
renders with the Content-Security-Policy and pulls nothing from outside the server; every route that
changes state refuses a request without the session's CSRF token. Flask's test client over the real
services."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.api.test_dashboard import TOKEN, csrf_of, log_in
from tests.fixtures.notifications import MakeRuntime
from worker_app.web.api import create_app
from worker_app.web.dashboard import CONTENT_SECURITY_POLICY

#: A URL of the page itself pointing elsewhere: ``src=``/``href=``/``action=`` with a scheme or ``//``.
EXTERNAL = re.compile(r"""\b(?:src|href|action)\s*=\s*["']?\s*(?:[a-z][a-z0-9+.-]*:|//)""", re.I)


@pytest.fixture
def app(make_runtime: MakeRuntime, no_leftover_messages: None) -> Iterator[Flask]:
    import worker_app

    yield create_app(make_runtime(API_TOKEN=TOKEN), worker_app.broker)


def routes(app: Flask, method: str) -> list[str]:
    """The dashboard's routes answering ``method``, path parameters filled with a value their
    converter accepts (``1`` for an int, the first choice of an ``any``, else ``x``)."""
    found = []
    for rule in app.url_map.iter_rules():
        if not (rule.endpoint or "").startswith("dashboard.") or method not in (rule.methods or ()):
            continue
        if rule.endpoint in ("dashboard.login", "dashboard.static"):
            continue
        path = re.sub(r"<int:[^>]+>", "1", rule.rule)
        path = re.sub(r"<any\(([^,)]+)[^>]*>", r"\1", path)
        found.append(re.sub(r"<[^>]+>", "x", path))
    assert found, f"no dashboard {method} route"
    return sorted(set(found))


def test_every_dashboard_route_redirects_to_the_login_without_one(app: Flask) -> None:
    client = app.test_client()
    for path in routes(app, "GET") + routes(app, "POST"):
        answer = client.get(path) if path in routes(app, "GET") else client.post(path)
        assert answer.status_code == 302, (path, answer.status_code)
        assert answer.headers["Location"].startswith("/login?next="), path


def test_every_page_renders_with_the_policy_and_nothing_from_elsewhere(app: Flask) -> None:
    client: FlaskClient = app.test_client()
    log_in(client)
    pages = [path for path in routes(app, "GET") if not re.search(r"/(x|1)(/|$)", path) and path != "/"]
    assert {"/queues", "/dead-letters", "/jobs", "/workers", "/alerts", "/broadcasts"} <= set(pages)
    for path in pages:
        answer = client.get(path)
        assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])
        assert answer.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY, path
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
        outside = EXTERNAL.findall(answer.text)
        assert not outside, (path, outside)
        assert not re.search(r"<script(?![^>]*\bsrc=\"/dashboard-static/)", answer.text), path
        assert "<iframe" not in answer.text and "@import" not in answer.text, path


def test_every_state_changing_route_refuses_a_missing_or_forged_csrf_token(app: Flask) -> None:
    client = app.test_client()
    log_in(client)
    good = csrf_of(client, "/queues")
    for path in routes(app, "POST"):
        for token in (None, "forged", good[:-1]):
            data = {} if token is None else {"csrf_token": token}
            answer = client.post(path, data=data)
            assert answer.status_code == 400 and "bad CSRF token" in answer.text, (path, token)
