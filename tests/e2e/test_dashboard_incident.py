"""Tier 3: an operator's incident in a real headless Chromium, against `worker-app serve`, a real
worker (every queue, monitoring and payments among them), a scheduler that leads but fires only
the canary, the queue-depth samples and the service probes, and the sandbox's Telegram, Remnawave
panel and Crypto Pay.

A panel node goes offline and Crypto Pay starts refusing the worker's token while a paid invoice
waits for the poller: ``check_server_health`` opens the node's alert, ``verify_pending_payments``
dies at its first attempt (a 401 is a permanent ``CryptoPayAuthError``: no retry) and leaves a dead
letter with its traceback. One reload of the overview shows both tiles red; the operator follows the
tiles to the nodes and the alerts, then the dead-letters tile to the letter, reads the traceback,
lifts the cause (Crypto Pay accepts the token again) and replays it through the confirmation page;
the replayed poller completes the payment and the user gets the 30 days.

A full-page screenshot of every page visited (the overview and the dead letter also at a phone's
width) is written under the test's output directory (its path is printed) and, when
DASHBOARD_SCREENSHOTS_DIR is set and the walk passed, copied there: ``bin/screenshots`` regenerates
the docs' images (docs/img/dashboard) that way."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By

from sandbox.server import RunningSandbox
from scheduler.table import JOBS
from tests.fixtures.api import serving
from tests.fixtures.browser import DESKTOP, PHONE, follow, mid_reload, save_page, shows, text_of
from tests.fixtures.cryptobot import CryptoPay
from tests.fixtures.remnawave import Panel, user_spec
from tests.fixtures.scheduler import schedulers
from tests.fixtures.worker import poll, run_worker, wait_for
from tests.payments.test_activation import new_payment, parse

TOKEN = "dashboard-incident-token"
ADMIN = 9001
NODES = ("de-fra-1", "nl-ams-1", "fi-hel-1")
DOWN = "nl-ams-1"
POLLER = "verify_pending_payments"
SHOTS_ENV = "DASHBOARD_SCREENSHOTS_DIR"
CALM = ("workers", "leader", "nodes", "services", "alerts", "dead-letters")
"""The tiles a healthy fleet shows calm (not red) before the incident."""
QUIET_SCHEDULE = {
    **{f"SCHEDULE_{job.name.upper()}": "off" for job in JOBS},
    **{
        f"SCHEDULE_{name.upper()}": "every 60s"
        for name in ("scheduler_canary", "sample_queue_depths", "check_external_services")
    },
    "SCHEDULE_SAMPLE_QUEUE_DEPTHS_IMMEDIATE": "1",
}
"""The scheduler leads (its tile is calm) and fires only what cannot disturb the walk: the canary, the
queue-depth samples the overview charts, and the probes of the services (Crypto Pay is not one)."""

#: Every element with ``id="tile-<key>"`` on the page: key, classes, text and the first link's path,
#: read in one call so that all of them come from the same load of the page.
_TILES_JS = """
return Array.from(document.querySelectorAll('[id^="tile-"]')).map(function (e) {
  var a = e.tagName === 'A' ? e : e.querySelector('a');
  return {key: e.id.slice(5), classes: e.className, text: e.innerText.replace(/\\s+/g, ' ').trim(),
          href: a ? a.getAttribute('href') : null};
});
"""


@pytest.fixture
def stack(sandbox: RunningSandbox, panel: Panel, cryptopay: CryptoPay, tmp_path: Path) -> dict[str, str]:
    """The sandboxes, accepting the test session's tokens; the environment every process runs with."""
    sandbox.state.add_token(os.environ["TELEGRAM_BOT_TOKEN"])
    panel.admin("POST", "tokens", {"token": os.environ["REMNAWAVE_API_TOKEN"], "scopes": None})
    cryptopay.admin("POST", "tokens", {"token": os.environ["CRYPTOBOT_TOKEN"]})
    return {
        "API_TOKEN": TOKEN,
        "TELEGRAM_API_URL": sandbox.url,
        "REMNAWAVE_URL": panel.url,
        "CRYPTOBOT_API_URL": cryptopay.url,
        "ADMIN_TELEGRAM_IDS": str(ADMIN),
        "TELEGRAM_GLOBAL_RATE_PER_S": "0",
        "TELEGRAM_PER_CHAT_RATE_PER_S": "0",
        "EXPORT_DIR": str(tmp_path / "exports"),
    }


@pytest.fixture
def server(
    stack: dict[str, str], tmp_path: Path, rabbitmq_vhost: str, clean_tables: sa.Engine,
    redis_client: redis.Redis,
) -> Iterator[str]:  # fmt: skip
    with serving(tmp_path / "serve.log", stack) as base:
        yield base


def test_a_node_down_and_a_dead_payment_turn_the_overview_red_and_the_operator_replays_the_payment(
    stack: dict[str, str], server: str, browser: Any, tmp_path: Path, panel: Panel, cryptopay: CryptoPay,
    clean_tables: sa.Engine, redis_client: redis.Redis,
) -> None:  # fmt: skip
    from actors.monitoring import check_server_health
    from actors.monitoring.health import NODES_KEY
    from actors.payments import verify_pending_payments
    from worker_app.open_alerts import OpenAlerts

    walk = Walk(browser, server, tmp_path / "screenshots")
    print(f"\nscreenshots: {walk.shots}")
    # Given three nodes online, seen once by the health check, and a paid invoice waiting for the poller
    uuids = panel.add_nodes(*({"name": n, "countryCode": n[:2].upper()} for n in NODES))
    down_key = f"monitoring.node_offline.{uuids[NODES.index(DOWN)]}"
    [user_id] = panel.add_users(user_spec(expire_in=timedelta(days=2), telegram_id=4242))
    expiry_before = parse(panel.user(user_id)["expireAt"])
    payment_id = paid_payment(clean_tables, cryptopay, user_id)
    with (
        run_worker(tmp_path / "worker.log", env=stack) as worker,
        schedulers(tmp_path, {**stack, **QUIET_SCHEDULE}, count=1),
    ):
        check_server_health.send()
        wait_for(lambda: len(redis_client.smembers(NODES_KEY)) == len(NODES), 30,
                 f"the first health run (worker log: {worker.log_path})")  # fmt: skip
        walk.log_in_to_a_calm_overview()

        # When a node goes offline and Crypto Pay refuses the worker's token, and both jobs run
        panel.admin("POST", f"nodes/{uuids[NODES.index(DOWN)]}/state", {"state": "offline"})
        cryptopay.faults(token_rejected=True)
        check_server_health.send()
        verify_pending_payments.send()
        wait_for(lambda: OpenAlerts(redis_client).get(down_key), 30, f"the open alert {down_key}")
        dead_id = wait_for(lambda: open_dead_letter(clean_tables), 30, f"the dead letter of {POLLER}")

        # Then one reload of the overview shows both in trouble, and its tiles lead to the details
        walk.see_both_in_trouble_after_one_reload()
        walk.follow_the_nodes_and_alerts_tiles()
        walk.open_the_dead_letter(dead_id)

        # When the operator lifts the cause and replays the letter (asked first, with the count)
        cryptopay.faults(token_rejected=None)
        walk.replay(dead_id, lambda: status_of(clean_tables, dead_id))

        # Then the replayed poller succeeds: the overview counts it completed, the payment is not pending
        walk.see_the_poller_complete()
    assert payment_status(clean_tables, payment_id) == "completed"
    assert parse(panel.user(user_id)["expireAt"]) == expiry_before + timedelta(days=30)
    assert status_of(clean_tables, dead_id) == "replayed"
    names = sorted(p.name for p in walk.shots.glob("*.png"))
    assert len(names) == 13, names
    publish(walk.shots)


class Walk:
    """The operator's steps through the dashboard, each checked and photographed."""

    def __init__(self, browser: Any, server: str, shots: Path) -> None:
        self.browser, self.server, self.shots = browser, server, shots
        shots.mkdir()

    def shot(self, name: str, *, phone: bool = False) -> None:
        """A full-page screenshot ``<name>.png``; with ``phone``, ``<name>-phone.png`` at a phone's width."""
        save_page(self.browser, self.shots / f"{name}.png")
        if phone:
            self.browser.set_window_size(*PHONE)
            save_page(self.browser, self.shots / f"{name}-phone.png")
            self.browser.set_window_size(*DESKTOP)

    def click(self, css: str) -> None:
        follow(self.browser, css)

    def overview(self) -> None:
        self.browser.get(f"{self.server}/queues")

    def log_in_to_a_calm_overview(self) -> None:
        self.overview()
        assert "/login" in self.browser.current_url
        self.browser.find_element(By.ID, "token").send_keys(TOKEN)
        self.shot("01-login")
        self.click("#login")
        shows(self.browser, "h1", "Overview")
        # the management API's figures lag a few seconds behind the worker's consumers: the page
        # refreshes itself until they agree
        until_tiles(self.browser, lambda seen: all(k in seen and not seen[k]["trouble"] for k in CALM), 30,
                    "the overview before the incident to be calm")  # fmt: skip
        self.shot("02-overview")

    def see_both_in_trouble_after_one_reload(self) -> None:
        self.browser.refresh()
        seen = tiles(self.browser)
        red = {key for key, tile in seen.items() if tile["trouble"]}
        assert {"nodes", "dead-letters"} <= red, f"one reload after the incident: {describe(seen)}"
        assert f"1 of {len(NODES)} down" in seen["nodes"]["text"], describe(seen)
        self.shot("03-overview-incident", phone=True)

    def follow_the_nodes_and_alerts_tiles(self) -> None:
        self.click("#tile-nodes a")
        assert self.browser.current_url.endswith("/nodes"), self.browser.current_url
        wait_for(lambda: DOWN in self.browser.page_source, 15, f"{DOWN} listed on the nodes page")
        self.shot("04-nodes")
        self.overview()
        self.click("#tile-alerts a")
        assert self.browser.current_url.endswith("/alerts"), self.browser.current_url
        wait_for(lambda: f"node {DOWN} is OFFLINE" in self.browser.page_source, 15, "the node's open alert")
        self.shot("05-alerts")

    def open_the_dead_letter(self, dead_id: int) -> None:
        self.overview()
        self.click("#tile-dead-letters a")
        assert "/dead-letters" in self.browser.current_url, self.browser.current_url
        shows(self.browser, "#total", "1 dead letter(s) match.")
        self.shot("06-dead-letters")
        self.click(f"a.dead-link[href$='/dead-letters/{dead_id}']")
        shows(self.browser, "h1", f"Dead letter {dead_id}")
        traceback = text_of(self.browser, "#traceback")
        assert "CryptoPayAuthError" in traceback and "CRYPTOBOT_TOKEN is not accepted" in traceback, traceback
        assert "actors/payments/verify.py" in traceback, traceback
        # the failing line (the innermost frame of our own code) and the exception are highlighted
        frame = text_of(self.browser, "#traceback mark.frame")
        exception = text_of(self.browser, "#traceback mark.exception")
        assert frame.strip().startswith('File "') and frame.strip() in traceback, f"marked frame: {frame!r}"
        assert "/worker_app/clients/cryptobot.py" in frame and "raise" in frame, f"marked frame: {frame!r}"
        assert exception.startswith("worker_app.clients.cryptobot.CryptoPayAuthError"), exception
        assert field(self.browser, "status") == "dead"
        self.shot("07-dead-letter", phone=True)

    def replay(self, dead_id: int, status: Callable[[], str]) -> None:
        self.click("#replay")
        shows(self.browser, "#question", f"Replay 1 dead letter with id {dead_id}?")
        assert status() == "dead", "nothing is replayed before Confirm"
        self.shot("08-confirm-replay")
        self.click("#confirm")
        shows(self.browser, "#flash", "replayed 1 of 1 dead letter(s)")
        shows(self.browser, "h1", f"Dead letter {dead_id}")
        assert field(self.browser, "status") == "replayed"
        self.shot("09-replayed")

    def see_the_poller_complete(self) -> None:
        self.overview()
        shows(self.browser, f"#actor-{POLLER} .completed", "1", 45)  # the worker writes its counts every 5 s
        until_tiles(self.browser, lambda seen: not seen.get("dead-letters", {"trouble": True})["trouble"], 15,
                    "the dead letters tile to calm")  # fmt: skip
        self.shot("10-overview-after-replay")
        self.click("#tile-payments a")
        assert self.browser.current_url.endswith("/payments"), self.browser.current_url
        shows(self.browser, "#pending .figure", "0")  # no longer awaiting payment: completed
        self.shot("11-payments")


def paid_payment(engine: sa.Engine, cryptopay: CryptoPay, user_id: int) -> uuid.UUID:
    """A pending 30-day payment whose Crypto Pay invoice (made with the worker's token: an app sees
    only its own invoices) is paid, its webhook lost: the poller is what completes it."""
    payment_id = new_payment(engine, user_id)
    params = {"asset": "USDT", "amount": "5.00", "payload": str(payment_id)}
    invoice = cryptopay.result("createInvoice", params, token=os.environ["CRYPTOBOT_TOKEN"])
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE payments SET external_id = :inv WHERE id = :id"),
                     {"inv": str(invoice["invoice_id"]), "id": payment_id})  # fmt: skip
    cryptopay.pay(invoice["invoice_id"])
    return payment_id


def tiles(browser: Any) -> dict[str, dict[str, Any]]:
    """The overview's tiles by key, all from one load of the page: ``text``, ``trouble``, ``href``
    (retried only when the read lands while the page reloads itself)."""

    def read() -> list[dict[str, Any]] | None:
        try:
            return list(browser.execute_script(_TILES_JS))
        except WebDriverException as error:
            if mid_reload(error):
                return None
            raise

    found = wait_for(lambda: read() or None, 15, "the overview's tiles")
    return {t["key"]: {**t, "trouble": "trouble" in str(t["classes"]).split()} for t in found}


def until_tiles(
    browser: Any, condition: Callable[[dict[str, dict[str, Any]]], bool], timeout_s: float, what: str
) -> None:
    """Wait (the page refreshes itself) until the tiles meet ``condition``; fail naming what they show."""
    seen: dict[str, dict[str, Any]] = {}

    def met() -> bool:
        seen.clear()
        seen.update(tiles(browser))
        return condition(seen)

    if poll(met, timeout_s) is None:
        pytest.fail(f"timed out after {timeout_s}s waiting for {what}; the tiles show: {describe(seen)}")


def describe(seen: dict[str, dict[str, Any]]) -> str:
    """What the page showed, for a failure message: every tile's text, red or not, and its link."""
    if not seen:
        return "the page shows no tile (no element with id tile-<key>)"
    return "; ".join(
        f"{key}: {t['text']!r}{' (trouble)' if t['trouble'] else ''} -> {t['href']}"
        for key, t in seen.items()
    )


def field(browser: Any, name: str) -> str:
    """A dead letter page's field (``<tr id="field-<name>"><th>label</th><td>value</td></tr>``)."""
    return text_of(browser, f"#field-{name} td")


def open_dead_letter(engine: sa.Engine) -> int | None:
    with engine.connect() as conn:
        found = conn.execute(
            sa.text("SELECT id FROM dead_letters WHERE actor_name = :actor AND status = 'dead'"),
            {"actor": POLLER},
        ).scalar()
    return None if found is None else int(found)


def status_of(engine: sa.Engine, dead_id: int) -> str:
    with engine.connect() as conn:
        return str(
            conn.execute(sa.text("SELECT status FROM dead_letters WHERE id = :i"), {"i": dead_id}).scalar()
        )


def payment_status(engine: sa.Engine, payment_id: uuid.UUID) -> str:
    with engine.connect() as conn:
        return str(
            conn.execute(sa.text("SELECT status FROM payments WHERE id = :i"), {"i": payment_id}).scalar()
        )


def publish(shots: Path) -> None:
    """Copy the screenshots to DASHBOARD_SCREENSHOTS_DIR when it is set (``bin/screenshots``: the
    docs' images); only a walk that passed gets here, so the docs never show a failed one."""
    target = os.environ.get(SHOTS_ENV)
    if not target:
        return
    directory = Path(target)
    directory.mkdir(parents=True, exist_ok=True)
    for png in sorted(shots.glob("*.png")):
        shutil.copyfile(png, directory / png.name)
    print(f"screenshots copied to {directory}")
