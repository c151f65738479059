"""Tier 3: a real Prometheus (Debian's ``/usr/bin/prometheus``) with the shipped config and rules,
scraping a real worker, scheduler and ``worker-app serve`` every second.

The stack runs against the sandbox (Telegram, Remnawave, Crypto Pay): the scheduler fires every job
once as it becomes leader (``SCHEDULER_IMMEDIATE``), so the domains' own metrics appear as they do in
production. Worker A leaves ``reports`` and ``bulk`` unconsumed: 510 messages wait in ``bulk`` (a
backlog), ``send_daily_report`` waits in ``reports`` (the scheduler then skips its next slots as
pending); one payment message dies, Telegram answers a 429 and then fails until the workers' breaker
opens, a webhook is refused. The second phase starts worker B for those two queues and runs bulk
jobs, so that every dashboard query has series to read.

The rules are copied with every ``for:`` set to 1 h: an alert whose expression is true stays
``pending`` for the whole test, whatever the shipped durations.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib
import requests
import sqlalchemy as sa
import yaml

from deploy.grafana import build
from sandbox.cryptobot.app import RunningCryptoBot
from sandbox.remnawave_app import RunningRemnawave
from sandbox.server import RunningSandbox
from tests import e2e_actors
from tests.deploy.promql import RULES, defined_metrics, grafana_to_promql, metric_names
from tests.fixtures.api import serving
from tests.fixtures.cryptobot import CryptoPay
from tests.fixtures.ports import free_port
from tests.fixtures.remnawave import Panel, user_spec
from tests.fixtures.scheduler import purge, purge_domain_queues, start_scheduler
from tests.fixtures.services import IN_CI
from tests.fixtures.worker import ROOT, wait_for, worker_group
from worker_app.policies import DOMAINS
from worker_app.workers import CONSUMED_KEY

pytestmark = [pytest.mark.rabbitmq, pytest.mark.timeout(300)]  # the first test carries the stack start-up
PROMETHEUS = Path("/usr/bin/prometheus")
BACKLOG = 510
"""Ready messages left in ``bulk``: over QueueBacklogHigh's 500."""
ADMIN = 777300
CHAT = 5550100
UNCONSUMED = ("reports", "bulk")
"""Queues worker A leaves alone; worker B consumes them in the second phase."""
BOT_SECRET = "prometheus-test-secret"
NEVER_SEEN_HERE = {
    "cybervpn_redis_fallback": "only while Redis is down (a service every test shares)",
    "cybervpn_scheduler_duplicates_dropped_total": "only when a leader dies between a publish and its commit",
    "cybervpn_remnawave_malformed_users_total": "only for panel users outside the 3.x contract (none here)",
}
"""Metrics the dashboards chart that this test cannot produce without stopping a shared service or
staging a race; each must still be defined in the code (checked), and must really be unseen (so the
list shrinks as soon as one appears)."""


@dataclass
class Prometheus:
    """A running Prometheus's HTTP API."""

    url: str

    def api(self, path: str, **params: str) -> Any:
        body = requests.get(f"{self.url}/api/v1/{path}", params=params, timeout=10).json()
        assert body["status"] == "success", f"{path} {params}: {body.get('errorType')}: {body.get('error')}"
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        return list(self.api("query", query=expr)["result"])

    def value(self, expr: str) -> float | None:
        found = self.query(expr)
        return float(found[0]["value"][1]) if found else None

    def series(self, expr: str) -> list[dict[str, str]]:
        return [dict(found["metric"]) for found in self.query(expr)]

    def alerts(self, alert: str, state: str | None = None) -> list[dict[str, Any]]:
        """The active alerts named ``alert`` (only those in ``state``, when given)."""
        return [
            a
            for a in self.api("alerts")["alerts"]
            if a["labels"]["alertname"] == alert and state in (None, a["state"])
        ]

    def pending(self, alert: str) -> list[dict[str, Any]]:
        return self.alerts(alert, "pending")

    def names(self) -> set[str]:
        return set(self.api("label/__name__/values"))


@dataclass
class Stack:
    prometheus: Prometheus
    api: str
    telegram: RunningSandbox
    env: dict[str, str]
    """Worker B's environment (every process's, with worker B's metrics port)."""
    logs: Path


def prometheus_binary() -> Path:
    """Debian's prometheus; missing: a skip outside CI, a failure in CI (bin/_common.sh installs it)."""
    if not PROMETHEUS.exists():
        message = f"{PROMETHEUS} is missing: apt-get install prometheus (bin/_common.sh ensure_prometheus)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return PROMETHEUS


def write_config(directory: Path, targets: dict[str, list[str]]) -> Path:
    """The shipped prometheus.yml with these targets per job, scraped and evaluated every second, and
    its rules copied beside it with every ``for:`` at 1 h."""
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"}
    for job in config["scrape_configs"]:
        del job["dns_sd_configs"]  # the compose services' names: here, loopback ports
        job["static_configs"] = [{"targets": targets[job["job_name"]]}]
    (directory / "rules").mkdir()
    for path in RULES.glob("*.rules.yml"):
        (directory / "rules" / path.name).write_text(
            re.sub(r"(?m)^(\s+for:) \S+$", r"\1 1h", path.read_text())
        )
    path = directory / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def start_prometheus(resources: ExitStack, directory: Path, targets: dict[str, list[str]]) -> Prometheus:
    """Prometheus on a free loopback port with a data directory of its own, stopped on exit."""
    port, log_path = free_port(), directory / "prometheus.log"
    args = [
        str(prometheus_binary()),
        f"--config.file={write_config(directory, targets)}",
        f"--storage.tsdb.path={directory / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    resources.callback(_stop, proc)
    running = Prometheus(f"http://127.0.0.1:{port}")

    def ready() -> bool:
        if proc.poll() is not None:
            pytest.fail(f"prometheus exited with {proc.returncode}: {log_path.read_text()}")
        try:
            return requests.get(f"{running.url}/-/ready", timeout=1).ok
        except requests.ConnectionError:
            return False

    wait_for(ready, 30, "prometheus to be ready")
    return running


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def empty_tables(engine: sa.Engine) -> None:
    """What ``clean_tables`` does, once for the module: the secrets check, then every table emptied."""
    import models
    from tests.fixtures.secrets import check_dead_letters

    check_dead_letters(engine)
    with engine.begin() as conn:
        conn.execute(sa.text(f"TRUNCATE {', '.join(models.Base.metadata.tables)} RESTART IDENTITY CASCADE"))


def sandboxes(
    telegram: RunningSandbox, panel: Panel, cryptopay: CryptoPay, directory: Path
) -> dict[str, str]:
    """Fresh sandboxes accepting the test session's tokens; what every process of the stack runs with."""
    telegram.state.reset()
    telegram.state.add_token(os.environ["TELEGRAM_BOT_TOKEN"])
    panel.admin("POST", "reset")
    panel.admin("POST", "tokens", {"token": os.environ["REMNAWAVE_API_TOKEN"], "scopes": None})
    cryptopay.admin("POST", "reset")
    cryptopay.admin("POST", "tokens", {"token": os.environ["CRYPTOBOT_TOKEN"]})
    return {
        "TELEGRAM_API_URL": telegram.url,
        "REMNAWAVE_URL": panel.url,
        "CRYPTOBOT_API_URL": cryptopay.url,
        "ADMIN_TELEGRAM_IDS": str(ADMIN),
        "TELEGRAM_GLOBAL_RATE_PER_S": "0",
        "TELEGRAM_PER_CHAT_RATE_PER_S": "0",
        "EXPORT_DIR": str(directory / "exports"),
        "LOG_FORMAT": "json",
        "SCHEDULER_IMMEDIATE": "1",
        "SCHEDULE_SEND_DAILY_REPORT": "every 5s",
        "TELEGRAM_WEBHOOK_SECRET": BOT_SECRET,
        "BOT_UPDATE_HANDLER": "actors.bot_updates.example:handle",
    }


def seed(engine: sa.Engine, panel: Panel, cryptopay: CryptoPay) -> None:
    """Nodes (one offline), users (two expiring in two days) and a pending payment with its invoice."""
    nodes = [
        {"name": f"de-{i}", "countryCode": "DE", "state": state, "usersOnline": 3}
        for i, state in enumerate(("online", "online", "offline"))
    ]
    panel.admin("POST", "nodes", {"nodes": nodes})
    panel.add_users(
        *[user_spec(expire_in=timedelta(days=d), telegram_id=CHAT + i) for i, d in enumerate((2, 2, 40))]
    )
    # created with the worker's token: Crypto Pay shows an app only its own invoices
    invoice = cryptopay.result(
        "createInvoice", {"asset": "USDT", "amount": "5.00"}, token=os.environ["CRYPTOBOT_TOKEN"]
    )
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO payments (user_id, amount, currency, subscription_days, external_id) "
                "VALUES (1, 5, 'USDT', 30, :invoice)"
            ),
            {"invoice": str(invoice["invoice_id"])},
        )


@pytest.fixture(scope="module")
def stack(
    rabbitmq_vhost: str,
    migrated_database: str,
    sandbox_server: RunningSandbox,
    remnawave_server: RunningRemnawave,
    cryptobot_server: RunningCryptoBot,
    tmp_path_factory: Any,
) -> Iterator[Stack]:
    """Prometheus scraping worker A (every queue but reports and bulk), the scheduler, serve, and
    worker B's port (nothing there until the second phase)."""
    directory = tmp_path_factory.mktemp("prometheus")
    engine = sa.create_engine(migrated_database)
    client = redis_lib.Redis.from_url(os.environ["REDIS_URL"])
    client.flushdb()
    # worker B (reports, bulk) ran earlier and is only down: the scheduler still fires their jobs
    client.zadd(CONSUMED_KEY, dict.fromkeys(UNCONSUMED, time.time()))
    empty_tables(engine)
    purge_domain_queues()
    panel, cryptopay = Panel(remnawave_server), CryptoPay(cryptobot_server)
    env = sandboxes(sandbox_server, panel, cryptopay, directory)
    seed(engine, panel, cryptopay)
    engine.dispose()
    a, b, scheduler_port = free_port(), free_port(), free_port()
    consumed = tuple(q for q in DOMAINS if q not in UNCONSUMED)
    with ExitStack() as resources:
        resources.callback(purge_domain_queues)
        worker_a = {**env, "METRICS_PORT": str(a)}
        resources.enter_context(worker_group(directory / "worker-a.log", worker_a, consumed, processes=1))
        scheduler = start_scheduler(
            directory / "scheduler.log", {**env, "SCHEDULER_METRICS_PORT": str(scheduler_port)}
        )
        resources.callback(scheduler.stop)
        api = resources.enter_context(serving(directory / "serve.log", env))
        targets = {
            "cybervpn-worker": [f"127.0.0.1:{a}", f"127.0.0.1:{b}"],
            "cybervpn-scheduler": [f"127.0.0.1:{scheduler_port}"],
            "cybervpn-api": [api.removeprefix("http://")],
        }
        prometheus = start_prometheus(resources, directory, targets)
        yield Stack(prometheus, api, sandbox_server, {**env, "METRICS_PORT": str(b)}, directory)


def telegram_trouble(stack: Stack) -> None:
    """One 429, then Telegram failing (502) until Prometheus has seen the workers' breaker open."""
    from actors.notifications import send_notification

    def faults(**faults: Any) -> None:
        requests.post(f"{stack.telegram.url}/_sandbox/faults", json=faults, timeout=10).raise_for_status()

    faults(rate_limit={"count": 1, "retry_after": 1})
    send_notification.send(CHAT, "hello", "e2e")
    wait_for(lambda: stack.telegram.state.stats()["by_status"].get("429"), 30, "Telegram's 429")
    faults(server_error={"count": 1000, "status": 502})
    for n in range(6):
        send_notification.send(CHAT + n, f"message {n}", "e2e")
    opened = 'max_over_time(cybervpn_breaker_state{service="telegram"}[1m])'
    wait_for(lambda: stack.prometheus.value(opened) == 2, 60, "the Telegram breaker open in Prometheus")
    faults(server_error=None)


@pytest.fixture(scope="module")
def first_phase(stack: Stack) -> Stack:
    """A backlog in ``bulk``, a dead letter in ``payments``, a delayed retry, Telegram trouble, a
    refused webhook — after Prometheus has recorded the payments .XQ depth before the death."""
    xq = 'queue_state:cybervpn_queue_depth:max{queue="payments",state="dead"}'
    wait_for(
        lambda: stack.prometheus.value(xq) is not None, 60, "Prometheus to record the payments .XQ depth"
    )
    for n in range(BACKLOG):
        e2e_actors.e2e_progress.send(n)
    e2e_actors.e2e_permanent.send(42)
    e2e_actors.e2e_delayed_retry.send(f"run:{uuid.uuid4()}")
    telegram_trouble(stack)
    requests.post(f"{stack.api}/webhooks/cryptobot", json={"update_id": 1}, timeout=10)
    update = {"update_id": 7, "poll": {"id": "1"}}  # the demo bot ignores it: Telegram is in trouble here
    bot = requests.post(f"{stack.api}/webhooks/telegram", json=update, timeout=10,
                        headers={"X-Telegram-Bot-Api-Secret-Token": BOT_SECRET})  # fmt: skip
    assert bot.status_code == 200, bot.text
    return stack


def test_prometheus_scrapes_the_worker_the_scheduler_and_the_api(first_phase: Stack) -> None:
    p = first_phase.prometheus
    # Then each process's target is up (worker B's is not started yet)
    assert {s["job"] for s in p.series("up == 1")} == {
        "cybervpn-worker",
        "cybervpn-scheduler",
        "cybervpn-api",
    }
    # and serve's /metrics has the webhook it refused
    refused = 'cybervpn_webhooks_total{job="cybervpn-api",outcome="refused"}'
    wait_for(lambda: p.value(refused) == 1, 60, "the refused webhook, scraped from worker-app serve")


def test_queue_series_carry_the_labels_the_rules_read(first_phase: Stack) -> None:
    p = first_phase.prometheus
    # Then every domain queue has its depth by state and its consumers, from the worker's exposition
    ready = 'cybervpn_queue_depth{queue="bulk",state="ready"}'
    wait_for(lambda: p.value(ready) == BACKLOG, 60, "the bulk backlog in Prometheus")
    depths = p.series("cybervpn_queue_depth")
    assert {(s["queue"], s["state"]) for s in depths} >= {
        (q, st) for q in DOMAINS for st in ("ready", "dead")
    }
    assert {s["job"] for s in depths} == {"cybervpn-worker"}
    assert {s["queue"] for s in p.series("cybervpn_queue_consumers == 0")} >= set(UNCONSUMED)
    assert p.value('cybervpn_queue_consumers{queue="payments"}') == 1
    # and the message series carry queue_name and actor_name, the dead letter its reason
    wait_for(lambda: p.series('dramatiq_message_dead_total{queue_name="payments"}'), 60, "the dead message")
    [dead] = p.series('cybervpn_dead_letters_total{queue="payments"}')
    assert dead["reason"] == "permanent_error"
    waited = p.series('cybervpn_message_time_in_queue_seconds_count{queue_name="payments"}')
    assert "e2e_permanent" in {s["actor_name"] for s in waited}
    # and the scheduler's `job` label is exported_job beside the target's job
    wait_for(lambda: p.series('cybervpn_scheduler_skips_total{reason="pending"}'), 60, "a pending skip")
    fires = p.series("cybervpn_scheduler_fires_total")
    assert {"check_server_health", "send_daily_report"} <= {s["exported_job"] for s in fires}
    assert {s["job"] for s in fires} == {"cybervpn-scheduler"}
    assert p.value("sum(cybervpn_scheduler_leader)") == 1


def test_a_backlog_and_a_dead_letter_make_their_alerts_pending(first_phase: Stack) -> None:
    p = first_phase.prometheus
    [backlog] = wait_for(lambda: p.pending("QueueBacklogHigh"), 60, "QueueBacklogHigh pending")
    assert backlog["labels"] == {"alertname": "QueueBacklogHigh", "queue": "bulk", "severity": "warning"}
    assert backlog["annotations"]["summary"] == f"Queue bulk holds {BACKLOG} ready messages"
    assert backlog["annotations"]["runbook_url"] == "docs/alerts.md#queuebackloghigh"
    [dead] = wait_for(lambda: p.pending("DeadLettersGrowing"), 60, "DeadLettersGrowing pending")
    assert (dead["labels"]["queue"], dead["labels"]["severity"]) == ("payments", "warning")

    # and so do the other conditions this stack has: nobody on reports and bulk, worker B's port
    # silent, the offline node
    def pending_on(alert: str, label: str) -> set[str]:
        return {a["labels"][label] for a in p.pending(alert)}

    wait_for(
        lambda: pending_on("QueueWithoutConsumer", "queue") >= set(UNCONSUMED), 60, "nobody on reports, bulk"
    )
    worker_b = f"127.0.0.1:{first_phase.env['METRICS_PORT']}"
    wait_for(lambda: worker_b in pending_on("MetricsTargetDown", "instance"), 60, "worker B's port silent")
    wait_for(lambda: pending_on("NodeOffline", "node") == {"de-2"}, 60, "NodeOffline pending for de-2")
    # while what is healthy stays quiet
    for quiet in ("SchedulerNoLeader", "RemnawaveUnreachable", "QueueDepthsUnknown", "SchedulerMissedFires"):
        assert p.alerts(quiet) == [], quiet


SECOND_PHASE = (
    "cybervpn_exports_total",
    "cybervpn_bulk_users_total",
    "cybervpn_bulk_broadcast_recipients_total",
    "cybervpn_report_messages_total",
)
"""What the second phase waits for: each of its jobs has been scraped."""


@pytest.fixture(scope="module")
def second_phase(first_phase: Stack) -> Iterator[Stack]:
    """The backlog purged; worker B consumes reports and bulk, and bulk jobs run (a user operation,
    a broadcast, an export)."""
    from actors.bulk import execute_bulk_broadcast, execute_bulk_user_operation, generate_data_export
    from worker_app.jobs import enqueue_job
    from worker_app.runtime import get_runtime

    purge("bulk")
    with worker_group(first_phase.logs / "worker-b.log", first_phase.env, UNCONSUMED, processes=1):
        database = get_runtime().database
        enqueue_job(database, execute_bulk_user_operation, ("disable", [3]))
        enqueue_job(database, execute_bulk_broadcast, ([CHAT, CHAT + 1], "news", "e2e"))
        enqueue_job(database, generate_data_export, ("payments",))
        for metric in SECOND_PHASE:
            wait_for(lambda: first_phase.prometheus.series(metric), 60, f"{metric} in Prometheus")  # noqa: B023
        yield first_phase


def dashboard_queries() -> list[tuple[str, str]]:
    """(dashboard file, query) for every query of the committed dashboards (what Grafana loads)."""
    return [
        (name, expr)
        for name in build.DASHBOARDS
        for expr in build.queries(json.loads((build.OUTPUT / name).read_text()))
    ]


def test_every_dashboard_query_runs_on_series_prometheus_has_seen(second_phase: Stack) -> None:
    p = second_phase.prometheus
    seen = p.names()
    failed, unseen = [], set()
    for name, expr in dashboard_queries():
        promql = grafana_to_promql(expr)
        body = requests.get(f"{p.url}/api/v1/query", params={"query": promql}, timeout=10).json()
        if body["status"] != "success":
            failed.append(f"{name}: {promql}: {body.get('error')}")
        unseen |= {metric for metric in metric_names(promql) if metric not in seen}
    assert failed == []
    assert unseen - set(NEVER_SEEN_HERE) == set(), "charted, never scraped"
    assert set(NEVER_SEEN_HERE) <= defined_metrics()
    assert set(NEVER_SEEN_HERE) & seen == set(), "seen after all: take it off NEVER_SEEN_HERE"
