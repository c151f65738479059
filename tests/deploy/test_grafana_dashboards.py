"""The Grafana dashboards: the committed JSON is what the generator renders now, every query reads
metrics the code exports, and the provisioning files point at the datasource the panels use."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy.grafana import build
from deploy.grafana.domains import DOMAINS
from tests.deploy.promql import ROOT, defined_metrics, grafana_to_promql, metric_names

PROVISIONING = ROOT / "deploy" / "grafana" / "provisioning"


def models() -> dict[str, dict[str, Any]]:
    return {name: json.loads((build.OUTPUT / name).read_text()) for name in build.DASHBOARDS}


def test_the_committed_dashboards_are_up_to_date() -> None:
    checked = subprocess.run(
        [sys.executable, "-m", "deploy.grafana", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert checked.returncode == 0, f"{checked.stderr}run: .venv/bin/python -m deploy.grafana"


def test_check_mode_names_a_stale_dashboard(tmp_path: Path) -> None:
    out = tmp_path
    build.write(out)
    (out / "telegram.json").write_text("{}\n")
    (out / "gone.json").write_text("{}\n")
    assert build.stale(out) == ["telegram.json", "gone.json"]


@pytest.mark.parametrize("name", list(build.DASHBOARDS))
def test_every_query_reads_metrics_the_code_exports(name: str) -> None:
    known = defined_metrics()
    model = models()[name]
    unknown = {
        (expr, metric)
        for expr in build.queries(model)
        for metric in metric_names(grafana_to_promql(expr))
        if metric not in known
    }
    assert unknown == set()


def test_dashboards_have_unique_uids_and_every_panel_uses_the_provisioned_datasource() -> None:
    datasource = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text())["datasources"][
        0
    ]
    uids = [model["uid"] for model in models().values()]
    assert len(uids) == len(set(uids))
    for model in models().values():
        for panel in build._panels(model["panels"]):
            if panel["type"] != "row":
                assert panel["datasource"] == {"type": "prometheus", "uid": datasource["uid"]}, panel["title"]
                assert panel["title"] and panel["targets"], panel


def test_the_dashboard_provider_loads_the_generated_files() -> None:
    provider = yaml.safe_load((PROVISIONING / "dashboards" / "cybervpn.yml").read_text())["providers"][0]
    assert provider["type"] == "file" and provider["options"]["path"]


def test_the_overview_has_a_row_for_every_domain_queue() -> None:
    from worker_app.policies import DOMAINS as QUEUES

    assert tuple(QUEUES) == DOMAINS
    titles = [panel["title"] for panel in models()["overview.json"]["panels"]]
    assert [t.removeprefix("Domain: ") for t in titles if t.startswith("Domain: ")] == list(DOMAINS)
