"""What the rules and dashboards query, and what the code exports: the metric names in a PromQL
expression, every metric the code defines (as Prometheus sees it), and the shipped rule files.
Shared by the static checks here and the real-Prometheus test in ``tests/e2e/test_prometheus.py``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "rules"
SOURCES = ("worker_app", "actors", "scheduler")

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"(?<![\w:.$])([a-zA-Z_:][\w:]*)(?![\w:]|\s*\()")
_KEYWORDS = {
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "offset",
    "bool",
    "inf",
    "nan",
}
_DEFINITION = re.compile(r'\b(Counter|Gauge|Histogram|GaugeMetricFamily|CounterMetricFamily)\(\s*"(\w+)"')
_LABEL_VALUES = re.compile(r"^label_values\((\w+),\s*\w+\)$")
_TEMPLATE = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}


def grafana_to_promql(expr: str) -> str:
    """A dashboard's query as Prometheus can run it: Grafana's interval variables and ``$queue``
    substituted, a ``label_values(metric, label)`` variable query turned into the series it reads."""
    found = _LABEL_VALUES.match(expr)
    if found:
        return f"count by ({expr.split(',')[1].strip(' )')}) ({found.group(1)})"
    for variable, value in _TEMPLATE.items():
        expr = expr.replace(variable, value)
    return expr.replace("$queue", ".*")


def metric_names(expr: str) -> set[str]:
    """The metric names an expression reads (label names, functions and keywords left out)."""
    stripped = _GROUPING.sub(" ", _RANGES.sub(" ", _MATCHERS.sub(" ", _STRINGS.sub(" ", expr))))
    return {
        name
        for name in _IDENTIFIER.findall(stripped)
        if name.lower() not in _KEYWORDS and not re.fullmatch(r"\d+\w*", name)
    }


def defined_metrics() -> set[str]:
    """Every series name the code's prometheus_client metrics expose: ``<name>_total`` for a
    counter (prometheus_client appends it), ``_bucket``/``_sum``/``_count`` for a histogram."""
    exposed: set[str] = set()
    for package in SOURCES:
        for path in (ROOT / package).rglob("*.py"):
            for kind, name in _DEFINITION.findall(path.read_text(encoding="utf-8")):
                exposed |= _exposed(kind, name)
    return exposed


def _exposed(kind: str, name: str) -> set[str]:
    if kind in ("Counter", "CounterMetricFamily"):
        return {f"{name.removesuffix('_total')}_total"}
    if kind == "Histogram":
        return {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    return {name}


def rule_files() -> list[Path]:
    """The shipped rule files (``*.rules.yml``; their tests are ``*.test.yml``)."""
    return sorted(RULES.glob("*.rules.yml"))


def rules() -> list[dict[str, Any]]:
    """Every rule of every shipped rule file."""
    return [
        rule
        for path in rule_files()
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]


def alerts() -> list[dict[str, Any]]:
    return [rule for rule in rules() if "alert" in rule]


def recorded() -> set[str]:
    return {rule["record"] for rule in rules() if "record" in rule}
