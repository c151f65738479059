"""Tier 3: the dashboard in a real headless Chromium (Debian's chromium + chromedriver, Selenium),
against `worker-app serve` and a real worker. A screenshot of each page goes under the test's
output directory (its path is printed). Replay and discard go through their confirmation page
(plain HTML, no JavaScript): nothing changes until Confirm is pressed."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from tests.fixtures.api import serving
from tests.fixtures.browser import follow, text_of
from tests.fixtures.scheduler import purge
from tests.fixtures.worker import run_worker, wait_for

TOKEN = "dashboard-test-token"


@pytest.fixture
def server(tmp_path: Path, rabbitmq_vhost: str, clean_tables: sa.Engine) -> Iterator[str]:
    with serving(
        tmp_path / "serve.log", {"API_TOKEN": TOKEN, "EXPORT_DIR": str(tmp_path / "exports")}
    ) as base:
        yield base


def test_operator_logs_in_watches_a_queue_replays_and_discards_dead_letters_and_follows_a_job(
    server: str, browser: Any, tmp_path: Path, clean_tables: sa.Engine, redis_client: redis.Redis
) -> None:
    import worker_app
    from tests import e2e_actors
    from worker_app import jobs as tracking
    from worker_app.runtime import get_runtime

    shots = tmp_path / "screenshots"
    shots.mkdir()
    print(f"\nscreenshots: {shots}")

    def shot(name: str) -> None:
        browser.save_screenshot(str(shots / f"{name}.png"))

    def shows(css: str, expected: str) -> None:
        """Wait for the element to read ``expected`` (a read mid-navigation or mid-refresh is "")."""
        wait_for(lambda: text(css) == expected, 15, f"{css} to read {expected!r} (it reads {text(css)!r})")

    def text(css: str) -> str:
        """The element's text; "" while the page is reloading itself (auto-refresh)."""
        return text_of(browser, css)

    def click(css: str) -> None:
        follow(browser, css)

    def dead(run_key: str) -> int | None:
        with clean_tables.connect() as conn:
            return conn.execute(
                sa.text("SELECT id FROM dead_letters WHERE actor_name = 'e2e_fails_until_fixed' "
                        "AND args->>0 = :k"), {"k": run_key},
            ).scalar()  # fmt: skip

    def status_of(dead_id: int) -> str:
        with clean_tables.connect() as conn:
            return str(
                conn.execute(
                    sa.text("SELECT status FROM dead_letters WHERE id = :i"), {"i": dead_id}
                ).scalar()
            )

    worker_app.broker.declare_queue("sync", ensure=True)
    purge("sync")
    exports = {"EXPORT_DIR": str(tmp_path / "exports"), "EXPORT_PUBLIC_URL": server, "API_TOKEN": TOKEN}
    with run_worker(tmp_path / "worker.log", env=exports, queues=("payments", "bulk")):
        # Log in
        browser.get(f"{server}/queues")
        assert "/login" in browser.current_url
        browser.find_element(By.ID, "token").send_keys(TOKEN)
        shot("01-login")
        browser.find_element(By.ID, "login").click()
        shows("h1", "Overview")
        shot("02-queues")

        # See a queue's depth change (the page refreshes itself every 5 s)
        for _ in range(3):
            worker_app.broker.get_actor("heartbeat_sync").send("n", 0)
        wait_for(lambda: text("#queue-sync .ready") == "3", 60, "the sync queue to show 3 ready")
        shot("03-queue-depth")

        # See the queue's open dead letter, follow it, read its traceback
        key = f"dash-{uuid.uuid4().hex[:8]}"
        e2e_actors.e2e_fails_until_fixed.send(key)
        dead_id = wait_for(lambda: dead(key), 30, "the dead letter")
        browser.get(f"{server}/queues")
        shows("#queue-payments .dead a", "1")
        assert text("#queue-payments .xq").startswith("XQ ")
        click("#queue-payments .dead a")
        assert browser.current_url.endswith("/dead-letters?queue=payments")
        shot("04-dead-letters")
        click("a.dead-link")
        assert "PermanentError: cause of" in text("#traceback")
        assert "e2e_actors.py" in text("#traceback mark.frame"), "the actor's own failing line is marked"
        assert text("#traceback mark.exception").endswith(f"PermanentError: cause of {key} not fixed yet")
        assert text("#field-dead_at").startswith("Dead at ") and " · " in text("#field-dead_at"), (
            "relative · absolute"
        )
        shot("05-dead-letter")

        # Replay it once its cause is fixed: asked first, nothing sent on Cancel, sent on Confirm
        redis_client.set(f"{key}:fixed", 1)
        click("#replay")
        shows("#question", f"Replay 1 dead letter with id {dead_id}?")
        shot("06-confirm-replay")
        assert status_of(dead_id) == "dead", "nothing is replayed before Confirm"
        click("#cancel")
        shows("h1", f"Dead letter {dead_id}")
        assert status_of(dead_id) == "dead"
        assert not redis_client.exists(f"{key}:done")
        click("#replay")
        click("#confirm")
        shows("#flash", "replayed 1 of 1 dead letter(s)")
        shows("h1", f"Dead letter {dead_id}")
        wait_for(lambda: redis_client.exists(f"{key}:done"), 30, "the replayed message to succeed")
        shot("07-replayed")

        # Discard every match of a filter: asked first with the count, done on Confirm
        other = f"dash-{uuid.uuid4().hex[:8]}"
        e2e_actors.e2e_fails_until_fixed.send(other)
        other_id = wait_for(lambda: dead(other), 30, "the second dead letter")
        browser.get(f"{server}/dead-letters")
        browser.find_element(By.ID, "q").send_keys(other.upper())  # the search reads the arguments, any case
        click("#filter")
        shows("#total", "1 dead letter(s) match.")
        assert [e.text for e in browser.find_elements(By.CSS_SELECTOR, "a.dead-link")] == [str(other_id)]
        browser.get(f"{server}/dead-letters?actor=e2e_fails_until_fixed")
        shows("#total", "1 dead letter(s) match.")
        click("#discard-all")
        shows("#question", "Discard 1 dead letter matching actor=e2e_fails_until_fixed?")
        shot("08-confirm-discard")
        assert status_of(other_id) == "dead", "nothing is discarded before Confirm"
        click("#confirm")
        shows("#flash", "discarded 1 dead letter(s)")
        assert status_of(other_id) == "discarded"
        shows("#total", "0 dead letter(s) match.")

        # Every status on request
        Select(browser.find_element(By.ID, "status")).select_by_value("all")
        click("#filter")
        shows("#total", "2 dead letter(s) match (status: all).")
        assert sorted(e.text for e in browser.find_elements(By.CSS_SELECTOR, "#dead-letters td.status")) == [
            "discarded", "replayed",
        ]  # fmt: skip
        shot("09-all-statuses")

        # Watch a job's progress bar reach 100 %
        job_id = tracking.enqueue_job(
            get_runtime().database, e2e_actors.e2e_progress, (60, "ok", 0.5), initiated_by="dashboard-test"
        ).message_id
        browser.get(f"{server}/jobs/{job_id}")
        wait_for(lambda: text("#job-status") == "running", 30, "the job to start")
        shot("10-job-running")
        wait_for(lambda: "100 %" in text("#job-progress"), 60, "the progress bar to reach 100 %")
        shows("#job-status", "succeeded")
        shot("11-job-done")

        # Export payments and download the file from the Bulk page; a tampered link is refused
        exporter = worker_app.broker.get_actor("generate_data_export")
        export_id = tracking.enqueue_job(
            get_runtime().database, exporter, ("payments", None, "csv"), initiated_by="dashboard-test"
        ).message_id
        browser.get(f"{server}/bulk")
        wait_for(
            lambda: text(f"#bulk-{export_id} a.download") == "Download", 60, "the export's Download link"
        )
        shot("12-bulk")
        link = browser.find_element(By.CSS_SELECTOR, f"#bulk-{export_id} a.download").get_attribute("href")
        assert link.startswith(f"{server}/exports/{export_id}?expires=")
        browser.find_element(By.CSS_SELECTOR, f"#bulk-{export_id} a.download").click()  # stays on the page
        downloads = tmp_path / "downloads"
        done = wait_for(lambda: [f for f in downloads.glob("payments-*.csv")], 30, "the download")
        assert done[0].read_text().startswith("id,"), done[0].read_text()[:200]
        browser.get(link.replace("sig=", "sig=0"))
        assert "bad link signature" in browser.page_source or "malformed link" in browser.page_source

        for page in ("jobs", "schedules", "workers"):
            browser.get(f"{server}/{page}")
            shot(f"13-{page}")
        assert "payments" in text("#workers"), "the worker's heartbeat lists its queues"
    assert len(list(shots.glob("*.png"))) == 15
