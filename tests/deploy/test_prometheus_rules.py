"""The shipped Prometheus rules: valid (``promtool check rules``), their unit tests pass (``promtool
test rules``), every alert is tested firing and quiet, labelled, annotated and has its runbook, and
every metric they read is one the code exports."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.promql import (
    ROOT,
    RULES,
    alerts,
    defined_metrics,
    metric_names,
    recorded,
    rule_files,
    rules,
)

PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
RUNBOOKS = ROOT / "docs" / "alerts.md"
SEVERITIES = {"critical", "warning", "info"}


def promtool() -> str:
    """promtool's path; the test fails (never skips) without it: CI installs it."""
    found = shutil.which("promtool")
    if found is None:
        pytest.fail(
            "promtool is not installed: run `bin/_common.sh`'s ensure_prometheus, or "
            "`apt-get install prometheus` (Debian's package ships promtool)"
        )
    return found


def run(*args: str, cwd: Path = RULES) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def test_every_rule_file_passes_promtool_check_rules() -> None:
    checked = run("check", "rules", *[p.name for p in rule_files()])
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_every_rule_file_has_its_unit_tests_and_they_pass() -> None:
    tests = sorted(RULES.glob("*.test.yml"))
    assert {p.name.removesuffix(".test.yml") for p in tests} == {
        p.name.removesuffix(".rules.yml") for p in rule_files()
    }
    tested = run("test", "rules", *[p.name for p in tests])
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_the_prometheus_config_is_valid_and_loads_every_rule_file() -> None:
    checked = run("check", "config", "prometheus.yml", cwd=PROMETHEUS_DIR)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    for path in rule_files():
        assert f"Checking rules/{path.name}" in checked.stdout


def test_the_config_scrapes_every_worker_scheduler_and_api_container() -> None:
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    found = {
        name: (job["dns_sd_configs"][0]["names"], job["dns_sd_configs"][0]["port"])
        for name, job in jobs.items()
    }
    assert found == {
        "cybervpn-worker": (["worker", "worker-long"], 9090),
        "cybervpn-scheduler": (["scheduler"], 9091),
        "cybervpn-api": (["api"], 8000),
    }
    assert jobs["cybervpn-api"]["metrics_path"] == "/metrics"
    # the rules read the app's `job` label as exported_job: Prometheus's default
    assert not any(job.get("honor_labels") for job in jobs.values())


def _alert_tests() -> list[dict[str, Any]]:
    return [
        case
        for path in sorted(RULES.glob("*.test.yml"))
        for test in yaml.safe_load(path.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
    ]


@pytest.mark.parametrize("alert", [a["alert"] for a in alerts()])
def test_every_alert_is_tested_both_firing_and_quiet(alert: str) -> None:
    cases = [case for case in _alert_tests() if case["alertname"] == alert]
    assert any(case.get("exp_alerts") for case in cases), f"{alert}: no test where it fires"
    assert any(not case.get("exp_alerts") for case in cases), f"{alert}: no test where it stays quiet"


def _anchors() -> set[str]:
    """GitHub's anchors of docs/alerts.md's headings (lower case, punctuation dropped)."""
    headings = re.findall(r"^#+\s+(.+?)\s*$", RUNBOOKS.read_text(encoding="utf-8"), re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("rule", alerts(), ids=lambda rule: str(rule["alert"]))
def test_every_alert_has_a_severity_a_summary_and_its_runbook(rule: dict[str, Any]) -> None:
    name = rule["alert"]
    assert rule["labels"]["severity"] in SEVERITIES
    assert rule["annotations"]["summary"]
    assert rule["annotations"]["runbook_url"] == f"docs/alerts.md#{name.lower()}"
    assert name.lower() in _anchors(), f"docs/alerts.md has no section {name}"


def test_alert_names_are_unique() -> None:
    names = [a["alert"] for a in alerts()]
    assert len(names) == len(set(names))


def test_every_metric_the_rules_read_is_exported_by_the_code_or_recorded() -> None:
    known = defined_metrics() | recorded() | {"up"}
    unknown = {
        (rule.get("alert") or rule["record"], name)
        for rule in rules()
        for name in metric_names(rule["expr"])
        if name not in known
    }
    assert unknown == set()
