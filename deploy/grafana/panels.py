"""The few panel shapes every dashboard uses, on the provisioned Prometheus datasource.

A panel is built from :class:`Query` values (PromQL and a legend); Grafana's ``$__rate_interval``
is :data:`RATE`. Panel ids and query ref ids are assigned here and when rendering, so a dashboard
module only says what to show.
"""

from __future__ import annotations

from dataclasses import dataclass
from string import ascii_uppercase

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.builders import prometheus, stat, timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants
from grafana_foundation_sdk.models import common, dashboard

DATASOURCE = dashboard.DataSourceRef(type_val="prometheus", uid="prometheus")
"""The datasource ``provisioning/datasources/prometheus.yml`` creates (same uid)."""
RATE = "$__rate_interval"
RANGE = "$__range"

Panel = timeseries.Panel | stat.Panel


@dataclass(frozen=True)
class Query:
    """One PromQL expression and its legend (``{{label}}`` placeholders)."""

    expr: str
    legend: str = ""


def _targets(
    queries: tuple[Query, ...], instant: bool = False
) -> list[cogbuilder.Builder[variants.Dataquery]]:
    built: list[cogbuilder.Builder[variants.Dataquery]] = []
    for ref, query in zip(ascii_uppercase, queries, strict=False):
        target = prometheus.Dataquery().expr(query.expr).ref_id(ref).datasource(DATASOURCE)
        target = target.instant() if instant else target.range()
        built.append(target.legend_format(query.legend) if query.legend else target)
    return built


def graph(
    title: str,
    description: str,
    unit: str,
    *queries: Query,
    span: int = 12,
    height: int = 8,
    bars: bool = False,
    stacked: bool = False,
) -> timeseries.Panel:
    """A time series panel: lines (or bars, e.g. for ``increase()``), optionally stacked."""
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .datasource(DATASOURCE)
        .targets(_targets(queries))
        .span(span)
        .height(height)
        .legend(
            common_builders.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.LIST)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
        )
        .tooltip(
            common_builders.VizTooltipOptions()
            .mode(common.TooltipDisplayMode.MULTI)
            .sort(common.SortOrder.DESCENDING)
        )
        .fill_opacity(10)
        .line_width(1)
        .show_points(common.VisibilityMode.NEVER)
    )
    if bars:
        panel = panel.draw_style(common.GraphDrawStyle.BARS).fill_opacity(60)
    if stacked:
        panel = panel.stacking(common_builders.StackingConfig().mode(common.StackingMode.NORMAL))
    return panel


def single(
    title: str,
    description: str,
    unit: str,
    query: Query,
    *,
    span: int = 4,
    height: int = 4,
    steps: tuple[tuple[float | None, str], ...] = ((None, "green"),),
    mappings: dict[int, tuple[str, str]] | None = None,
) -> stat.Panel:
    """A stat panel of one instant value, coloured by ``steps`` (``(from, colour)``, the first
    from ``None``) or by ``mappings`` (value → text and colour)."""
    thresholds = (
        dashboard_builders.ThresholdsConfig()
        .mode(dashboard.ThresholdsMode.ABSOLUTE)
        .steps([dashboard.Threshold(value=value, color=colour) for value, colour in steps])
    )
    panel = (
        stat.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .datasource(DATASOURCE)
        .targets(_targets((query,), instant=True))
        .span(span)
        .height(height)
        .thresholds(thresholds)
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .graph_mode(common.BigValueGraphMode.NONE)
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )
    if mappings:
        panel = panel.mappings([_value_map(mappings)])
    return panel


def _value_map(mappings: dict[int, tuple[str, str]]) -> dashboard.ValueMap:
    return dashboard.ValueMap(
        options={
            str(value): dashboard.ValueMappingResult(text=text, color=colour, index=i)
            for i, (value, (text, colour)) in enumerate(sorted(mappings.items()))
        }
    )


BREAKER_STATES = {0: ("closed", "green"), 1: ("half-open", "orange"), 2: ("open", "red")}
"""How the breaker gauges' values read (``cybervpn_breaker_state``, ``cybervpn_telegram_breaker_state``)."""


def row(title: str, *panels: Panel, collapsed: bool = False) -> dashboard_builders.Row:
    """A row; a collapsed one holds its panels (Grafana drops panels of an open row otherwise)."""
    built = dashboard_builders.Row(title)
    if collapsed:
        for panel in panels:
            built = built.with_panel(panel)
    return built


def board(
    uid: str,
    title: str,
    description: str,
    sections: list[tuple[dashboard_builders.Row, list[Panel]]],
    *,
    variables: list[dashboard_builders.QueryVariable] | None = None,
) -> dashboard_builders.Dashboard:
    """A dashboard of rows: each ``(row, panels)`` places the panels under an open row, or, when the
    row is collapsed (built with its panels), the row alone."""
    built = (
        dashboard_builders.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["cybervpn"])
        .refresh("30s")
        .time("now-3h", "now")
        .timezone("utc")
        .editable()
        .tooltip(dashboard.DashboardCursorSync.CROSSHAIR)
        .link(
            dashboard_builders.DashboardLink("CyberVPN")
            .type(dashboard.DashboardLinkType.DASHBOARDS)
            .tags(["cybervpn"])
            .as_dropdown(True)
            .keep_time(True)
            .include_vars(False)
        )
    )
    for variable in variables or []:
        built = built.with_variable(variable)
    for section, panels in sections:
        built = built.with_row(section)
        for panel in panels:
            built = built.with_panel(panel)
    return built


def queue_variable() -> dashboard_builders.QueryVariable:
    """``$queue``: the domain queues (from ``cybervpn_queue_depth``); "All" is ``.*``."""
    return (
        dashboard_builders.QueryVariable("queue")
        .label("Queue")
        .datasource(DATASOURCE)
        .query("label_values(cybervpn_queue_depth, queue)")
        .refresh(dashboard.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dashboard.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(dashboard.VariableOption(selected=True, text="All", value="$__all"))
    )
