"""Render every dashboard to its JSON file in ``deploy/grafana/dashboards/``, or tell which committed
files differ from what the code renders now."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders.dashboard import Dashboard
from grafana_foundation_sdk.cog.encoder import JSONEncoder

from deploy.grafana import business, external, overview, scheduling, telegram

OUTPUT = Path(__file__).resolve().parent / "dashboards"
DASHBOARDS: dict[str, Callable[[], Dashboard]] = {
    "overview.json": overview.dashboard,
    "scheduler.json": scheduling.dashboard,
    "telegram.json": telegram.dashboard,
    "external.json": external.dashboard,
    "business.json": business.dashboard,
}
"""File name → the function building that dashboard."""


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels") or [])


def to_json(dashboard: Dashboard) -> dict[str, Any]:
    """The dashboard as Grafana's JSON model, its panels numbered 1, 2, … in order."""
    model: dict[str, Any] = json.loads(json.dumps(dashboard.build(), cls=JSONEncoder))
    for number, panel in enumerate(_panels(model["panels"]), start=1):
        panel["id"] = number
    return model


def render() -> dict[str, str]:
    """File name → the JSON text the code renders now (stable: sorted keys, one trailing newline)."""
    return {
        name: json.dumps(to_json(build()), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        for name, build in DASHBOARDS.items()
    }


def write(output: Path = OUTPUT) -> list[Path]:
    """Write every dashboard's JSON; the paths written."""
    output.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render().items():
        path = output / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def stale(output: Path = OUTPUT) -> list[str]:
    """The dashboards whose committed JSON is missing or differs from the rendering, plus any JSON file
    there that no dashboard renders any more."""
    rendered = render()
    changed = [
        name
        for name, text in rendered.items()
        if not (output / name).exists() or (output / name).read_text(encoding="utf-8") != text
    ]
    leftover = sorted(p.name for p in output.glob("*.json") if p.name not in rendered)
    return changed + leftover


def queries(model: dict[str, Any]) -> list[str]:
    """Every PromQL expression of a dashboard's JSON model: its panels' targets and its query
    variables (as Grafana stores them, template variables unsubstituted)."""
    found = [
        target["expr"]
        for panel in _panels(model["panels"])
        for target in panel.get("targets") or []
        if target.get("expr")
    ]
    for variable in model.get("templating", {}).get("list", []):
        if variable.get("type") == "query" and isinstance(variable.get("query"), str):
            found.append(variable["query"])
    return found
