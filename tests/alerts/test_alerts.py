"""Admin alerts: fingerprints, fleet-wide windows in real Redis, sends to the sandbox Telegram."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from sandbox.server import RunningSandbox
from tests.fixtures.notifications import ADMIN_CHAT
from tests.fixtures.worker import wait_for
from worker_app.alerts import AdminAlerts, AlertEvent, fingerprint, normalise, recent_alerts
from worker_app.open_alerts import OpenAlert, OpenAlerts
from worker_app.runtime import Runtime

CRITICAL_CHAT = 777001
MakeAlerts = Callable[..., AdminAlerts]


@pytest.fixture
def make_alerts(runtime: Runtime, redis_client: Any) -> Iterator[MakeAlerts]:
    made: list[AdminAlerts] = []

    def make(dedup_s: int = 60, **kwargs: Any) -> AdminAlerts:
        alerts = AdminAlerts(
            runtime.redis, runtime.telegram_sender, [ADMIN_CHAT], dedup_s=dedup_s,
            critical_ids=[CRITICAL_CHAT], **kwargs,
        )  # fmt: skip
        made.append(alerts)
        return alerts

    yield make
    for alerts in made:
        alerts.close(timeout_s=0)


def bug(actor: str, error_type: str, message: str, severity: Any = "error") -> AlertEvent:
    fp = fingerprint("unexpected_error", actor, error_type, message)
    return AlertEvent("unexpected_error", severity, fp, f"{actor}: {error_type}: {message}", message)


def sent(sandbox: RunningSandbox, chat_id: int = ADMIN_CHAT) -> list[dict[str, Any]]:
    return [e for e in sandbox.state.received() if e["chat_id"] == chat_id and e["status"] == 200]


def test_variable_parts_of_an_error_message_do_not_make_a_new_fingerprint() -> None:
    assert normalise("user 42 not found") == normalise("user 4711 not found") == "user <n> not found"
    assert normalise("node 3f2a9c1e-0b1d-4c5e-9f00-1234567890ab gone") == "node <uuid> gone"
    assert normalise("key 'abc' missing") == normalise('key "xyz" missing')
    same = fingerprint("dead_letter", "verify", "KeyError", "'invoice_17'")
    assert same == fingerprint("dead_letter", "verify", "KeyError", "'invoice_18'")
    assert same != fingerprint("dead_letter", "verify", "ValueError", "'invoice_17'")
    assert same != fingerprint("dead_letter", "refund", "KeyError", "'invoice_17'")
    assert same != fingerprint("unexpected_error", "verify", "KeyError", "'invoice_17'")


def test_a_storm_of_identical_failures_is_one_alert_then_one_summary(
    make_alerts: MakeAlerts, sandbox: RunningSandbox, redis_client: Any
) -> None:
    # Given a window of three seconds
    alerts = make_alerts(dedup_s=3)
    # When 5,000 failures of one kind arrive (each with its own user id in the message)
    for n in range(5000):
        alerts.raise_alert(bug("renew", "KeyError", f"user {n} has no plan"))
    assert alerts.flush(30)
    # Then one alert went out at once, and one summary with the count once the window closed
    wait_for(lambda: len(sent(sandbox)) >= 2, 15, "the summary of the window")
    assert alerts.flush(30)
    first, summary = (e["text"] for e in sent(sandbox))
    assert first == "[ERROR] user 0 has no plan"
    assert summary.startswith("[ERROR] 4999 more in the last 3 s (window closed): renew: KeyError: user ")
    # And the history counts all of them under one fingerprint
    [listed] = recent_alerts(redis_client)
    assert listed["count"] == 5000 and listed["messages"] == 1 and listed["kind"] == "unexpected_error"


def test_three_new_bugs_are_three_alerts_however_often_each_repeats(
    make_alerts: MakeAlerts, sandbox: RunningSandbox
) -> None:
    alerts = make_alerts(dedup_s=600)
    for n in range(300):
        alerts.raise_alert(bug("renew", "KeyError", f"'plan_{n}'"))
        alerts.raise_alert(bug("renew", "TypeError", "unsupported operand"))
        alerts.raise_alert(bug("refund", "KeyError", f"'plan_{n}'"))
    assert alerts.flush(30)
    assert sorted(e["text"] for e in sent(sandbox)) == [
        "[ERROR] 'plan_0'", "[ERROR] 'plan_0'", "[ERROR] unsupported operand",
    ]  # fmt: skip


def test_an_alert_of_another_process_within_the_window_is_suppressed_fleet_wide(
    make_alerts: MakeAlerts, sandbox: RunningSandbox
) -> None:
    one, other = make_alerts(), make_alerts()
    one.raise_alert(bug("renew", "KeyError", "'a'"))
    assert one.flush(10)
    other.raise_alert(bug("renew", "KeyError", "'b'"))
    assert other.flush(10)
    assert len(sent(sandbox)) == 1


def test_severity_decides_who_gets_it_and_whether_it_makes_a_sound(
    make_alerts: MakeAlerts, sandbox: RunningSandbox
) -> None:
    alerts = make_alerts()
    for severity in ("info", "warning", "error", "critical"):
        alerts.raise_alert(bug(f"actor_{severity}", "KeyError", "x", severity=severity))
    assert alerts.flush(10)
    to_admin = {e["text"].split("]")[0][1:]: e["disable_notification"] for e in sent(sandbox)}
    assert to_admin == {"INFO": True, "WARNING": True, "ERROR": False, "CRITICAL": False}
    to_critical = [(e["text"], e["disable_notification"]) for e in sent(sandbox, CRITICAL_CHAT)]
    assert to_critical == [("[CRITICAL] x", False)]


def test_alerts_raised_while_telegram_is_down_wait_and_go_out_when_it_is_back(
    make_alerts: MakeAlerts, sandbox: RunningSandbox
) -> None:
    # Given Telegram closing every connection
    sandbox.state.set_faults(down=True)
    alerts = make_alerts()
    # When three new bugs are raised
    for kind in ("KeyError", "TypeError", "ValueError"):
        alerts.raise_alert(bug("renew", kind, "x"))
    # Then nothing is lost: they wait in the sender thread
    assert not alerts.flush(3)
    assert alerts.pending_messages() == 3 and sent(sandbox) == []
    # And once Telegram answers again, all three go out
    sandbox.state.set_faults(down=False)
    assert alerts.flush(60), "the alerts kept while Telegram was down were not sent after it came back"
    assert sorted(e["text"] for e in sent(sandbox)) == ["[ERROR] x"] * 3


def test_an_incident_key_is_its_fingerprint(
    make_alerts: MakeAlerts, sandbox: RunningSandbox, redis_client: Any
) -> None:
    alerts = make_alerts()
    alerts.alert("health:node-7:offline", "node-7 is offline\nsince 10:00", severity="critical")
    alerts.alert("health:node-7:offline", "node-7 is offline\nsince 10:01", severity="critical")
    assert alerts.flush(10)
    assert [e["text"] for e in sent(sandbox)] == ["[CRITICAL] node-7 is offline\nsince 10:00"]
    [listed] = recent_alerts(redis_client)
    assert listed["fingerprint"] == "incident:health:node-7:offline" and listed["count"] == 2
    assert listed["title"] == "node-7 is offline"


def test_operator_lists_recent_alerts_with_their_counts_by_cli_and_api(
    make_alerts: MakeAlerts, runtime: Runtime, sandbox: RunningSandbox, redis_client: Any
) -> None:
    import json
    import os
    import subprocess

    from tests.fixtures.api import WORKER_APP
    from worker_app.web.api import create_app

    # Given a bug raised three times and a critical incident once
    alerts = make_alerts()
    for n in range(3):
        alerts.raise_alert(bug("renew", "KeyError", f"'plan_{n}'"))
    assert alerts.flush(10)
    bugs_at = recent_alerts(redis_client)[0]["last_at"]  # the history orders by the millisecond
    wait_for(lambda: time.time() >= bugs_at + 0.002, 5, "the clock to pass the bugs' millisecond")
    alerts.alert("payments.webhook_forged", "a webhook with a bad signature", severity="critical")
    assert alerts.flush(10)

    # When the operator asks the CLI, Then both are listed, newest first, with counts
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [WORKER_APP, "alerts", *args], env=os.environ, capture_output=True, text=True, check=False
        )

    table = cli("--recent")
    assert table.returncode == 0, table.stderr
    header, newest, older = table.stdout.splitlines()
    assert header.split()[-4:] == ["KIND", "COUNT", "SENT", "TITLE"]
    assert newest.split()[2:6] == ["critical", "incident", "1", "1"] and "bad signature" in newest
    assert older.split()[2:6] == ["error", "unexpected_error", "3", "1"] and "renew: KeyError" in older
    critical = cli("--recent", "--severity", "critical", "--json").stdout.splitlines()
    assert [json.loads(line)["fingerprint"] for line in critical] == ["incident:payments.webhook_forged"]
    bad = cli("--severity", "loud")
    assert bad.returncode == 2 and "'loud' is not one of" in bad.stderr

    # And without --recent it lists the open alerts: none yet, then the one opened, with its age
    none_open = cli()
    assert none_open.returncode == 0 and none_open.stdout == "" and "no open alerts" in none_open.stderr
    opened_at = time.time() - 125
    OpenAlerts(redis_client).open(
        OpenAlert("anomaly.queue_depth.reports", "warning", "queue reports holds 900 messages waiting",
                  opened_at, opened_at, "check_anomalies")
    )  # fmt: skip
    header, row = cli().stdout.splitlines()
    assert header.split() == ["SINCE", "(UTC)", "FOR", "SEVERITY", "KEY", "TITLE"]
    assert row.split()[2].startswith("2m") and "900 messages" in row
    assert row.split()[3:5] == ["warning", "anomaly.queue_depth.reports"]
    assert json.loads(cli("--json").stdout)["first_seen"] == opened_at
    assert cli("--severity", "critical").stderr.startswith("no open alerts")
    assert cli("--kind", "incident").returncode == 2

    # And the API answers the same, filters and limit included, and names a bad parameter
    client = create_app(runtime, __import__("worker_app").broker).test_client()
    listed = client.get("/api/v1/alerts").get_json()["items"]
    assert [(a["kind"], a["count"]) for a in listed] == [("incident", 1), ("unexpected_error", 3)]
    assert len(client.get("/api/v1/alerts?limit=1").get_json()["items"]) == 1
    assert client.get("/api/v1/alerts?kind=unexpected_error").get_json()["items"][0]["count"] == 3
    page = client.get("/alerts").text
    assert "a webhook with a bad signature" in page and "unexpected_error" in page
    assert "anomaly.queue_depth.reports" in page.split('id="open-alerts"')[1].split("</table>")[0]
    [open_item] = client.get("/api/v1/alerts/open").get_json()["items"]
    assert open_item["key"] == "anomaly.queue_depth.reports" and open_item["source"] == "check_anomalies"
    assert client.get("/api/v1/alerts/open?severity=critical").get_json()["items"] == []
    wrong = client.get("/api/v1/alerts?limit=0")
    assert wrong.status_code == 422 and "limit" in json.dumps(wrong.get_json())
