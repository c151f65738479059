"""``bench.dashboard`` cannot rot: on its own seed at the baseline's scale (100 dead letters, 1,000
jobs), every page it enumerates — every GET page of the dashboard, its variants, the second pages
it follows — answers through the bench's own login and measuring code. No time is asserted (the
bench itself reports those)."""

from __future__ import annotations

import sqlalchemy as sa

from bench import dashboard as bench
from bench.dashboard_seed import seed
from tests.fixtures.notifications import MakeRuntime
from worker_app.web.api import create_app


def test_the_bench_enumerates_and_answers_every_dashboard_page_of_its_seed(
    make_runtime: MakeRuntime, clean_tables: sa.Engine, no_leftover_messages: None
) -> None:
    import worker_app

    # Given the bench's seed at the baseline's scale (every table a page reads, the schedule's
    # fires of its last ten minutes) and the app as ``worker-app serve`` builds it, with a token
    actors = {name: actor.queue_name for name, actor in worker_app.broker.actors.items()}
    counts = seed(clean_tables, bench.BASELINE_SCALE, actors, bench.fire_periods())
    assert counts["dead_letters"] == 100 and counts["jobs"] == 1000 and counts["scheduler_fires"] > 0
    runtime = make_runtime(API_TOKEN=bench.TOKEN)
    app = create_app(runtime, worker_app.broker)

    # When the bench lists the pages
    sample = bench.sample_of(clean_tables, actors)
    pages = bench.pages(app, sample)

    # Then every GET page of the dashboard blueprint is there (but static files and the login), and
    # every endpoint the variants name still exists
    dashboard_gets = {
        rule.rule
        for rule in app.url_map.iter_rules()
        if rule.endpoint.startswith("dashboard.") and rule.endpoint not in bench.SKIPPED
        and "GET" in (rule.methods or ())
    }  # fmt: skip
    assert {page.label for page in pages if "?" not in page.label} == dashboard_gets
    assert set(bench.variants(sample)) <= {rule.endpoint for rule in app.url_map.iter_rules()}
    assert any(page.linked for page in pages)

    # And each answers (below 400, no failed tile, no redirect to the login) through the bench's own
    # login and measuring code, its statements counted
    client = app.test_client()
    bench.log_in(client, bench.TOKEN)
    statements = bench.Statements(runtime.database.engine)
    measured = [bench.measure(client, statements, page, requests=1, warmups=0) for page in pages]
    assert all(m.status < 400 for m in measured)
    by_label = {m.page.label: m for m in measured}
    assert by_label["/dead-letters"].rows > 0 and by_label["/dead-letters"].statements > 0
    assert by_label["/dead-letters?older=<linked>"].rows > 0
    assert len(bench.table(measured, by_label, 300.0).splitlines()) == 2 + len(measured)
