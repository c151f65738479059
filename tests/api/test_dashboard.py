"""The dashboard over real services (Flask's test client): login, basic auth, CSRF, the confirm step
of replay/discard, the status filter, open dead letters per queue, the HTML error page."""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Iterator

import pika
import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient
from werkzeug.datastructures import MultiDict

from tests.fixtures.notifications import MakeRuntime, unreachable_redis_url
from tests.fixtures.ports import free_port
from tests.fixtures.scheduler import amqp_parameters, purge, ready_count
from tests.fixtures.worker import wait_for
from worker_app.web.api import create_app
from worker_app.web.dashboard import render_error

TOKEN = "dash-token-456"
PAGES = ("/queues", "/dead-letters", "/jobs", "/bulk", "/schedules", "/workers", "/alerts")


@pytest.fixture
def client(make_runtime: MakeRuntime, no_leftover_messages: None) -> Iterator[FlaskClient]:
    import worker_app

    yield create_app(make_runtime(API_TOKEN=TOKEN), worker_app.broker).test_client()


def csrf_of(client: FlaskClient, path: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).text)
    assert found is not None
    return found.group(1)


def log_in(client: FlaskClient) -> None:
    answer = client.post(
        "/login", data={"token": TOKEN, "csrf_token": csrf_of(client, "/login"), "next": "/jobs"}
    )
    assert answer.status_code == 302 and answer.headers["Location"] == "/jobs"


def dead_letter(engine: sa.Engine, queue: str = "sync", status: str = "dead") -> int:
    with engine.begin() as conn:
        return int(
            conn.execute(
                sa.text("""INSERT INTO dead_letters (message_id, queue_name, actor_name, args, kwargs, reason,
                           attempts, first_failed_at, last_failed_at, status)
                           VALUES ('dash-' || gen_random_uuid(), :q, 'x', '[]', '{}', 'failed', 1, now(),
                           now(), :s)
                           RETURNING id"""),
                {"q": queue, "s": status},
            ).scalar_one()
        )


def hidden_fields(page: str) -> list[tuple[str, str]]:
    """The hidden inputs of ``page`` (the form a confirmation page posts again)."""
    return [
        (name, html.unescape(value))
        for name, value in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page)
    ]


def listed_ids(page: str) -> list[int]:
    return [int(i) for i in re.findall(r'class="dead-link" href="[^"]+">(\d+)<', page)]


def status_of(engine: sa.Engine, dead_id: int) -> str:
    with engine.connect() as conn:
        return str(
            conn.execute(
                sa.text("SELECT status FROM dead_letters WHERE id = :i"), {"i": dead_id}
            ).scalar_one()
        )


def test_every_page_asks_for_the_token_first(client: FlaskClient) -> None:
    for page in PAGES:
        answer = client.get(page)
        assert answer.status_code == 302 and answer.headers["Location"].startswith("/login?next=")
    wrong = client.post("/login", data={"token": "nope", "csrf_token": csrf_of(client, "/login")})
    assert wrong.status_code == 200 and "wrong token" in wrong.text
    log_in(client)
    for page in PAGES:
        assert client.get(page).status_code == 200, page


def test_basic_auth_with_the_token_as_password(client: FlaskClient) -> None:
    good = base64.b64encode(f"ops:{TOKEN}".encode()).decode()
    bad = base64.b64encode(b"ops:guess").decode()
    assert client.get("/queues", headers={"Authorization": f"Basic {good}"}).status_code == 200
    assert client.get("/queues", headers={"Authorization": f"Basic {bad}"}).status_code == 302


def test_a_state_change_without_the_csrf_token_is_refused_and_changes_nothing(
    client: FlaskClient, clean_tables: sa.Engine
) -> None:
    dead_id = dead_letter(clean_tables)
    log_in(client)
    for data in (
        {"ids": str(dead_id), "confirm": "1"},
        {"ids": str(dead_id), "confirm": "1", "csrf_token": "forged"},
    ):
        answer = client.post("/dead-letters/discard", data=data)
        assert answer.status_code == 400 and "bad CSRF token" in answer.text
    assert status_of(clean_tables, dead_id) == "dead"
    token = csrf_of(client, f"/dead-letters/{dead_id}")
    done = client.post(
        "/dead-letters/discard", data={"ids": str(dead_id), "csrf_token": token, "confirm": "1"}
    )
    assert done.status_code == 302 and status_of(clean_tables, dead_id) == "discarded"


def test_unknown_ids_are_404(client: FlaskClient) -> None:
    log_in(client)
    missing = client.get("/dead-letters/999999")
    assert missing.status_code == 404 and "no dead letter with id 999999" in missing.text
    assert missing.mimetype == "text/html" and "Back to Queues" in missing.text, "a page, not raw JSON"
    assert client.get("/jobs/nope").status_code == 404
    nowhere = client.get("/no-such-page")
    assert nowhere.status_code == 404 and nowhere.mimetype == "text/html"


def test_a_dependency_down_is_a_readable_503_page(make_runtime: MakeRuntime, rabbitmq_vhost: str) -> None:
    import worker_app

    runtime = make_runtime(DATABASE_URL=f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/x")
    page = create_app(runtime, worker_app.broker).test_client().get("/dead-letters")
    assert page.status_code == 503 and page.mimetype == "text/html"
    assert "PostgreSQL is unavailable" in page.text and "Traceback" not in page.text


def test_discard_all_asks_first_naming_the_count_and_changes_nothing_until_confirmed(
    client: FlaskClient, clean_tables: sa.Engine
) -> None:
    # Given two open dead letters of the sync queue and one of payments
    sync_ids = [dead_letter(clean_tables), dead_letter(clean_tables)]
    other = dead_letter(clean_tables, queue="payments")
    log_in(client)
    token = csrf_of(client, "/dead-letters?queue=sync")

    # When the operator presses "Discard all 2" on the sync-filtered page
    asked = client.post("/dead-letters/discard", data={
        "csrf_token": token, "all": "1", "queue": "sync", "next": "/dead-letters?queue=sync",
    })  # fmt: skip

    # Then a confirmation page names the count and the filter, and nothing is discarded yet
    assert asked.status_code == 200
    assert "Discard 2 dead letters matching queue=sync?" in asked.text
    assert [status_of(clean_tables, i) for i in [*sync_ids, other]] == ["dead", "dead", "dead"]
    assert 'id="cancel" href="/dead-letters?queue=sync"' in asked.text

    # When they confirm: the same selection is posted again with confirm=1 and the CSRF token
    fields = hidden_fields(asked.text)
    assert ("confirm", "1") in fields and ("csrf_token", token) in fields and ("queue", "sync") in fields
    done = client.post("/dead-letters/discard", data=MultiDict(fields))

    # Then exactly the selection is discarded, and the operator is back on the page they came from
    assert done.status_code == 302 and done.headers["Location"] == "/dead-letters?queue=sync"
    assert [status_of(clean_tables, i) for i in [*sync_ids, other]] == ["discarded", "discarded", "dead"]
    assert "discarded 2 dead letter(s)" in client.get("/dead-letters?queue=sync").text


def test_a_single_replay_asks_first_too_and_sends_nothing_until_confirmed(
    client: FlaskClient, clean_tables: sa.Engine
) -> None:
    import worker_app

    worker_app.broker.declare_queue("sync", ensure=True)
    purge("sync")
    dead_id = dead_letter(clean_tables)
    log_in(client)
    token = csrf_of(client, f"/dead-letters/{dead_id}")

    asked = client.post("/dead-letters/replay", data={"csrf_token": token, "ids": str(dead_id)})
    assert asked.status_code == 200 and f"Replay 1 dead letter with id {dead_id}?" in asked.text
    assert status_of(clean_tables, dead_id) == "dead" and ready_count("sync") == 0

    done = client.post("/dead-letters/replay", data=MultiDict(hidden_fields(asked.text)))
    assert done.status_code == 302 and status_of(clean_tables, dead_id) == "replayed"
    assert ready_count("sync") == 1
    purge("sync")

    again = client.post("/dead-letters/replay", data={"csrf_token": token, "ids": str(dead_id)})
    assert "No dead letter with id" in again.text and 'id="confirm"' not in again.text


def test_the_dead_letters_page_filters_by_status(client: FlaskClient, clean_tables: sa.Engine) -> None:
    dead, replayed, discarded = (
        dead_letter(clean_tables, status=s) for s in ("dead", "replayed", "discarded")
    )
    log_in(client)

    assert listed_ids(client.get("/dead-letters").text) == [dead]
    assert sorted(listed_ids(client.get("/dead-letters?status=all").text)) == [dead, replayed, discarded]
    assert listed_ids(client.get("/dead-letters?status=replayed").text) == [replayed]
    page = client.get("/dead-letters?status=discarded").text
    assert listed_ids(page) == [discarded] and '<option value="discarded" selected>' in page
    assert 'id="discard-all"' not in page, "bulk actions act on open dead letters only"
    assert client.get("/dead-letters?status=bogus").status_code == 400


def test_the_queues_page_shows_open_dead_letters_with_the_xq_count_beside(
    client: FlaskClient, clean_tables: sa.Engine
) -> None:
    import worker_app

    # Given sync with two open dead letters, one replayed and one discarded, and one message in sync.XQ
    worker_app.broker.declare_queue("sync", ensure=True)
    purge("sync.XQ")
    for status in ("dead", "dead", "replayed", "discarded"):
        dead_letter(clean_tables, status=status)
    with pika.BlockingConnection(amqp_parameters()) as conn:
        conn.channel().basic_publish("", "sync.XQ", b"{}", pika.BasicProperties(delivery_mode=2))
    log_in(client)

    def sync_row() -> str | None:
        row = re.search(r'<tr id="queue-sync"[^>]*>(.*?)</tr>', client.get("/queues").text, re.S)
        assert row is not None
        return row.group(1) if "XQ 1<" in row.group(1) else None  # management stats lag ~5 s

    # Then "Dead" is the open dead letters, linked to them, with the .XQ count beside
    row = wait_for(sync_row, 30, "the Queues page to count 1 message in sync.XQ")
    assert re.search(r'<a class="dead-letters" href="/dead-letters\?queue=sync">2</a>', row), row
    assert re.search(
        r'<a class="dead-letters" href="/dead-letters\?queue=payments">0</a>', client.get("/queues").text
    )
    purge("sync.XQ")


def test_render_error_is_a_readable_page_without_database_redis_or_login(make_runtime: MakeRuntime) -> None:
    import worker_app

    # Given an app whose PostgreSQL and Redis are unreachable, and nobody logged in
    runtime = make_runtime(
        API_TOKEN=TOKEN, DATABASE_URL="postgresql+psycopg://postgres@127.0.0.1:1/nowhere",
        REDIS_URL=unreachable_redis_url(),
    )  # fmt: skip
    app = create_app(runtime, worker_app.broker)

    @app.get("/boom")
    def boom() -> tuple[str, int]:
        return render_error(503, "PostgreSQL is unavailable", "OperationalError: <connection refused>")

    # When an error page is rendered
    answer = app.test_client().get("/boom")

    # Then it is HTML with the status, the error, the detail (escaped) and the way back
    assert answer.status_code == 503 and answer.mimetype == "text/html"
    assert "<h1>PostgreSQL is unavailable</h1>" in answer.text and "HTTP 503" in answer.text
    assert "OperationalError: &lt;connection refused&gt;" in answer.text
    assert '<a id="back" href="/queues">Back to Queues</a>' in answer.text
    with app.test_request_context("/dead-letters/7"):
        assert render_error(404, "Not Found")[1] == 404


def test_a_job_is_cancelled_from_its_page_after_a_confirmation(
    client: FlaskClient, clean_tables: sa.Engine
) -> None:
    from actors.notifications import send_notification
    from worker_app import jobs as tracking
    from worker_app.runtime import get_runtime

    job_id = tracking.enqueue_job(get_runtime().database, send_notification, (42, "hi", "t")).message_id
    log_in(client)
    assert "cancel-job" in client.get(f"/jobs/{job_id}").text
    question = client.get(f"/jobs/{job_id}/cancel")
    assert (
        question.status_code == 200 and f"Cancel job {job_id} (send_notification, queued)?" in question.text
    )
    assert tracking.get_job(get_runtime().database, job_id).status == "queued", "asking changes nothing"
    token = csrf_of(client, f"/jobs/{job_id}/cancel")
    done = client.post(f"/jobs/{job_id}/cancel", data={"csrf_token": token}, follow_redirects=True)
    assert done.status_code == 200 and "cancelled" in done.text
    assert tracking.get_job(get_runtime().database, job_id).status == "cancelled"
    assert client.get("/jobs/%00").status_code == 404 and client.get("/jobs?status=nope").status_code == 400


def test_the_bulk_page_shows_progress_a_cancel_button_and_an_export_link(
    client: FlaskClient, clean_tables: sa.Engine
) -> None:
    with clean_tables.begin() as conn:
        conn.execute(
            sa.text("""
            INSERT INTO jobs (job_id, actor_name, queue_name, args, kwargs, status, progress, result,
                              initiated_by)
            VALUES ('bulk-run', 'execute_bulk_user_operation', 'bulk', '[]', '{"operation": "disable"}',
                    'running', '{"processed": 400, "total": 1000, "failed": 3}', NULL, 'admin:1'),
                   ('bulk-exp', 'generate_data_export', 'bulk', '[]', '{"export_type": "payments"}',
                    'succeeded', '{"processed": 10, "total": 10}',
                    '{"url": "http://127.0.0.1:8000/exports/bulk-exp?expires=1&sig=ab"}', 'admin:1'),
                   ('other', 'send_notification', 'notifications', '[]', '{}', 'running', NULL, NULL, NULL)
        """)
        )
    log_in(client)
    page = client.get("/bulk").text
    running = page[page.index('id="bulk-bulk-run"') :].split("</tr>")[0]
    assert "disable" in running and '<progress value="400" max="1000">' in running and "3 failed" in running
    assert 'class="cancel" href="/jobs/bulk-run/cancel"' in running and "Download" not in running
    export = page[page.index('id="bulk-bulk-exp"') :].split("</tr>")[0]
    assert 'class="download" href="http://127.0.0.1:8000/exports/bulk-exp?expires=1&amp;sig=ab"' in export
    assert "Cancel" not in export and "bulk-other" not in page
    assert 'id="download"' in client.get("/jobs/bulk-exp").text


def test_odd_ids_in_a_replay_form_select_nothing_instead_of_failing(
    client: FlaskClient, clean_tables: sa.Engine
) -> None:
    log_in(client)
    token = csrf_of(client, "/dead-letters")
    for odd in ("\u00b2", "9" * 5000, "-1"):
        answer = client.post("/dead-letters/replay", data={"ids": odd, "csrf_token": token})
        assert answer.status_code == 400 and "nothing selected" in answer.text


def test_a_queue_is_paused_and_resumed_from_the_queues_page(
    client: FlaskClient, clean_tables: sa.Engine
) -> None:
    from worker_app.pauses import paused_queues
    from worker_app.runtime import get_runtime

    log_in(client)
    page = client.get("/queues").text
    assert 'action="/queues/payments/pause"' in page and 'action="/queues/payments.DQ' not in page
    forged = client.post("/queues/payments/pause", data={"csrf_token": "forged", "reason": "x"})
    assert forged.status_code == 400 and paused_queues(get_runtime().database) == {}

    token = csrf_of(client, "/queues")
    done = client.post("/queues/payments/pause", data={"csrf_token": token, "reason": "incident 42"},
                       follow_redirects=True)  # fmt: skip
    assert "payments paused: workers follow within a few seconds" in done.text
    assert 'class="paused" title="by dashboard:' in done.text and "incident 42" in done.text
    assert paused_queues(get_runtime().database)["payments"].reason == "incident 42"

    resumed = client.post("/queues/payments/resume", data={"csrf_token": token}, follow_redirects=True)
    assert "payments resumed" in resumed.text and paused_queues(get_runtime().database) == {}
    assert client.post("/queues/nope/pause", data={"csrf_token": token}).status_code == 404


def test_a_bad_batch_limit_makes_the_schedules_page_name_it(make_runtime: MakeRuntime) -> None:
    import worker_app

    client = create_app(make_runtime(CHECK_ANOMALIES_BATCH_LIMIT="5"), worker_app.broker).test_client()
    answer = client.get("/schedules")
    assert answer.status_code == 500
    expected = "CHECK_ANOMALIES_BATCH_LIMIT: check_anomalies takes no batch to limit"
    assert expected in html.unescape(answer.text)


def many_dead_letters(engine: sa.Engine, count: int, *, kwargs: str, seconds_apart: int = 1) -> list[int]:
    """``count`` open dead letters of actor ``pay``, each ``seconds_apart`` older than the one
    before; their ids, newest first."""
    with engine.begin() as conn:
        return [
            int(i)
            for i in conn.execute(
                sa.text("""INSERT INTO dead_letters (message_id, queue_name, actor_name, args, kwargs, reason,
                           exception_type, exception_message, attempts, first_failed_at, last_failed_at,
                           dead_at)
                           SELECT 'many-' || gen_random_uuid(), 'payments', 'pay', '[1]',
                                  CAST(:kwargs AS jsonb), 'failed', 'KeyError', 'k', 1, now(), now(),
                                  now() - make_interval(secs => n * :apart)
                           FROM generate_series(1, :count) AS n ORDER BY n RETURNING id"""),
                {"count": count, "kwargs": kwargs, "apart": seconds_apart},
            ).scalars()
        ]


def page_link(page: str, kind: str) -> str | None:
    found = re.search(rf'<p class="pages" id="pages-top">.*?<a class="{kind}" href="([^"]+)"', page, re.S)
    return html.unescape(found.group(1)) if found else None


def page_range(page: str) -> str:
    found = re.search(r'id="pages-top">\s*<span class="range">([^<]*)</span>', page)
    assert found is not None, page
    return found.group(1)


def test_dead_letters_are_searched_and_paged_newest_first(
    client: FlaskClient, clean_tables: sa.Engine
) -> None:
    # Given 53 dead letters whose arguments name a customer, and others that do not
    wanted = many_dead_letters(clean_tables, 53, kwargs='{"customer": "ACME_Corp"}')
    many_dead_letters(clean_tables, 3, kwargs='{"customer": "other"}', seconds_apart=7)
    log_in(client)

    # When the operator searches for the customer (any case)
    first = client.get("/dead-letters?q=acme_corp").text

    # Then the newest 50 matches show, "1–50 of 53", with an Older link and no Newer one
    assert 'id="total">53 dead letter(s) match.' in first
    assert page_range(first) == "1–50 of 53" and listed_ids(first) == wanted[:50]
    assert page_link(first, "newer") is None
    older = page_link(first, "older")
    assert older is not None and older.startswith("/dead-letters?q=acme_corp&older=")
    second = client.get(older).text
    assert page_range(second) == "51–53 of 53" and listed_ids(second) == wanted[50:]
    assert page_link(second, "older") is None
    back = page_link(second, "newer")
    assert back is not None and listed_ids(client.get(back).text) == wanted[:50]
    assert client.get("/dead-letters?older=nonsense").status_code == 400
    assert client.get("/dead-letters?newer=1_99999999999999999999").status_code == 400

    # And the search reads the actor, the error and the arguments; % and _ are themselves
    assert 'id="total">56 dead' in client.get("/dead-letters?q=PAY").text
    assert 'id="total">56 dead' in client.get("/dead-letters?q=keyerror").text
    assert 'id="total">0 dead' in client.get("/dead-letters?q=acme%25corp").text
    assert 'id="total">3 dead' in client.get("/dead-letters?q=other&queue=payments").text


def test_discard_all_of_a_search_asks_with_its_count_and_discards_only_its_matches(
    client: FlaskClient, clean_tables: sa.Engine
) -> None:
    wanted = many_dead_letters(clean_tables, 52, kwargs='{"customer": "acme"}')
    others = many_dead_letters(clean_tables, 2, kwargs='{"customer": "other"}')
    log_in(client)
    listing = client.get("/dead-letters?q=ACME").text
    assert (
        'id="discard-all">Discard all 52<' in listing
        and '<input type="hidden" name="q" value="ACME">' in listing
    )

    asked = client.post("/dead-letters/discard", data={
        "csrf_token": csrf_of(client, "/dead-letters"), "all": "1", "q": "ACME",
        "next": "/dead-letters?q=ACME",
    })  # fmt: skip
    assert "Discard 52 dead letters matching search=ACME?" in asked.text
    assert status_of(clean_tables, wanted[0]) == "dead"
    done = client.post("/dead-letters/discard", data=MultiDict(hidden_fields(asked.text)))
    assert done.status_code == 302 and done.headers["Location"] == "/dead-letters?q=ACME"
    assert {status_of(clean_tables, i) for i in wanted} == {"discarded"}
    assert {status_of(clean_tables, i) for i in others} == {"dead"}


TRACEBACK = """Traceback (most recent call last):
  File "/opt/venv/lib/python3.11/site-packages/dramatiq/worker.py", line 519, in process_message
    res = actor(*message.args, **message.kwargs)
  File "/opt/venv/lib/python3.11/site-packages/actors/payments/verify.py", line 42, in verify_pending
    raise PermanentError(f"invoice {invoice_id} is <gone>")
worker_app.errors.PermanentError: invoice 7 is <gone>
"""


def test_a_dead_letter_reads_as_times_json_and_a_marked_traceback(
    client: FlaskClient, clean_tables: sa.Engine
) -> None:
    # Given a dead letter with a long argument, empty kwargs, no trace id, and a traceback
    with clean_tables.begin() as conn:
        dead_id = conn.execute(
            sa.text("""INSERT INTO dead_letters (message_id, queue_name, actor_name, args, kwargs, options,
                       reason, exception_type, exception_message, traceback, attempts, first_failed_at,
                       last_failed_at)
                       VALUES ('readable-1', 'payments', 'verify_pending', CAST(:args AS jsonb), '{}',
                               '{"job": {"initiated_by": "admin:7"}}', 'permanent_error',
                               'worker_app.errors.PermanentError', 'invoice 7 is <gone>', :tb, 1,
                               now() - interval '2 hours', now() - interval '1 hour')
                       RETURNING id"""),
            {"args": '[7, "' + "z" * 300 + '"]', "tb": TRACEBACK},
        ).scalar_one()
    log_in(client)

    page = client.get(f"/dead-letters/{dead_id}").text

    # Then times are moments, JSON is indented with the long string folded, empty fields are hidden
    fields = page[page.index('id="fields"') : page.index("</table>")]
    assert re.search(r'<tr id="field-dead_at"><th>Dead at</th><td><time datetime="[^"]+Z"', fields)
    assert "1.0 h ago" in fields or "1 h ago" in fields, "last failed an hour ago"
    assert (
        '<div class="json">[\n  7,\n  &#34;' + "z" * 120 + '<details class="fold"><summary>… 180 more chars'
        in fields
    )
    assert '"initiated_by": "admin:7"' in html.unescape(fields)
    for hidden in ("kwargs", "trace_id", "replayed_at", "discarded_at", "raw_body", "traceback"):
        assert f'id="field-{hidden}"' not in fields, hidden
    assert ">None<" not in page and "datetime.datetime" not in page

    # And the traceback marks the actor's own failing line and the exception, escaped
    assert re.search(
        r'<mark class="frame">  File &#34;/opt/venv/lib/python3.11/site-packages/actors/payments/'
        r"verify.py&#34;, line 42, in verify_pending\n    raise PermanentError\(.*&lt;gone&gt;.*\)</mark>",
        page,
    )
    assert (
        '<mark class="exception">worker_app.errors.PermanentError: invoice 7 is &lt;gone&gt;</mark>' in page
    )

    # And the list shows the error's short type with the full one as its title, and the arguments
    row = client.get("/dead-letters").text
    assert (
        '<abbr title="worker_app.errors.PermanentError">PermanentError</abbr>: invoice 7 is &lt;gone&gt;'
        in row
    )
    assert '<td class="args">[7, &#34;zzz' in row


def test_jobs_are_searched_by_id_actor_or_error_and_paged(
    client: FlaskClient, clean_tables: sa.Engine
) -> None:
    # Given 55 failed exports (one a minute) and one notification
    with clean_tables.begin() as conn:
        conn.execute(
            sa.text("""
            INSERT INTO jobs (job_id, actor_name, queue_name, args, kwargs, status, error, result, created_at)
            SELECT 'exp-' || lpad(n::text, 3, '0'), 'generate_data_export', 'bulk', '[]', '{}', 'failed',
                   'UpstreamUnavailable: S3 answered 503', '{"rows": 10}', now() - make_interval(mins => n)
            FROM generate_series(1, 55) AS n;
            INSERT INTO jobs (job_id, actor_name, queue_name, args, kwargs, status, result)
            VALUES ('note-1', 'send_notification', 'notifications', '[42]', '{}', 'succeeded', NULL)
        """)
        )
    log_in(client)

    # The newest first, 50 a page, refreshing itself while it is the live first page
    live = client.get("/jobs").text
    assert page_range(live) == "1–50 of 56" and 'http-equiv="refresh" content="3"' in live
    assert live.index(">note-1<") < live.index(">exp-001<") and ">exp-050<" not in live
    older = page_link(live, "older")
    assert older is not None
    deeper = client.get(older).text
    assert page_range(deeper) == "51–56 of 56" and ">exp-050<" in deeper and ">exp-055<" in deeper
    assert 'http-equiv="refresh"' not in deeper, "an older page holds still"

    # A search finds a job by its id, its actor (any part of the name) or its error (any part, any
    # case); it does not refresh under the typist
    found = client.get("/jobs?q=s3+ANSWERED").text
    assert page_range(found) == "1–50 of 55" and ">note-1<" not in found
    assert 'http-equiv="refresh"' not in found
    assert page_range(client.get("/jobs?q=exp-005").text) == "1–1 of 1"
    assert "No job matches." in client.get("/jobs?q=exp-05").text, "a part of an id is not searched"
    assert page_range(client.get("/jobs?q=send_notif&status=succeeded").text) == "1–1 of 1"
    assert "No job matches." in client.get("/jobs?q=nothing-like-it").text
    assert client.get("/jobs?older=1_x").status_code == 200, "a cursor to nowhere is an empty page"
    assert client.get("/jobs?q=%00").status_code == 400 and client.get("/jobs?older=x").status_code == 400

    # A job's page shows its result as JSON and leaves its empty fields out
    detail = client.get("/jobs/exp-001").text
    assert (
        '<tr id="field-result"><th>Result</th><td><div class="json">{\n  &#34;rows&#34;: 10\n}</div>'
        in detail
    )
    assert 'id="field-progress"' not in detail and 'id="field-started_at"' not in detail
    assert ">None<" not in detail
