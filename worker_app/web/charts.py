"""Server-rendered SVG charts for the dashboard: no script, no external file, nothing fetched from
elsewhere (the page's Content-Security-Policy allows none of that).

:func:`line_chart` draws a few series of counts per time bucket (processed, retried, failed per
minute) as polylines on a shared scale, with the largest value, the first and last bucket's time and
a legend; each point carries a ``<title>`` (the browser's tooltip) with its time and value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from markupsafe import Markup, escape

#: Series colours, in the order the series are given (processed, retried, failed).
COLOURS = ("#2b7a3d", "#c77d00", "#c0392b", "#3455a4")


def line_chart(
    chart_id: str,
    starts: Sequence[int],
    series: Mapping[str, Sequence[int]],
    *,
    width: int = 720,
    height: int = 160,
    time_format: str = "%H:%M",
    gauge: bool = False,
) -> Markup:
    """An inline ``<svg id=chart_id>``: one polyline per series over the buckets starting at
    ``starts`` (unix s, oldest first), all series on one scale from 0 to the largest value. The
    legend gives each series' total (counts per bucket) or, for a ``gauge`` (a depth sampled each
    bucket), its latest value."""
    if any(len(values) != len(starts) for values in series.values()):
        raise ValueError("every series needs one value per bucket")
    left, right, top, bottom = 44, 8, 8, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max((v for values in series.values() for v in values), default=0)
    scale = max(peak, 1)
    step = plot_w / max(len(starts) - 1, 1)

    def x(i: int) -> float:
        return round(left + i * step, 1)

    def y(v: int) -> float:
        return round(top + plot_h - v * plot_h / scale, 1)

    def stamp(start: int) -> str:
        return datetime.fromtimestamp(start, UTC).strftime(time_format)

    parts = [
        f'<svg id="{escape(chart_id)}" class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'preserveAspectRatio="none" xmlns="http://www.w3.org/2000/svg">',
        f'<line class="axis" x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" '
        'stroke="#99a" />',
        f'<line class="axis" x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#99a" />',
        f'<text x="{left - 4}" y="{top + 10}" text-anchor="end" font-size="11">{peak}</text>',
        f'<text x="{left - 4}" y="{top + plot_h}" text-anchor="end" font-size="11">0</text>',
    ]
    if starts:
        parts.append(f'<text x="{left}" y="{height - 18}" font-size="11">{stamp(starts[0])}</text>')
        parts.append(
            f'<text x="{left + plot_w}" y="{height - 18}" text-anchor="end" font-size="11">'
            f"{stamp(starts[-1])} UTC</text>"
        )
    legend_x = left
    for n, (name, values) in enumerate(series.items()):
        colour = COLOURS[n % len(COLOURS)]
        label = escape(name)
        points = " ".join(f"{x(i)},{y(v)}" for i, v in enumerate(values))
        parts.append(
            f'<polyline class="series" data-series="{label}" fill="none" stroke="{colour}" '
            f'stroke-width="1.5" points="{points}" />'
        )
        parts.extend(
            f'<circle cx="{x(i)}" cy="{y(v)}" r="2" fill="{colour}"><title>{label} {v} at '
            f"{stamp(starts[i])} UTC</title></circle>"
            for i, v in enumerate(values)
            if v
        )
        figure = f"now {values[-1]}" if gauge and values else str(sum(values))
        parts.append(
            f'<rect x="{legend_x}" y="{height - 10}" width="10" height="3" fill="{colour}" />'
            f'<text x="{legend_x + 14}" y="{height - 6}" font-size="11">{label} ({figure})</text>'
        )
        legend_x += 14 + 8 * (len(name) + len(figure) + 3)
    parts.append("</svg>")
    return Markup("".join(parts))


def sparkline(values: Sequence[int | None], *, width: int = 120, height: int = 22, title: str = "") -> Markup:
    """A small inline line of ``values`` (oldest first) from 0 to their largest, for a table cell;
    a ``None`` (no sample) breaks the line. ``title`` is its tooltip."""
    peak = max((v for v in values if v is not None), default=0)
    step = (width - 2) / max(len(values) - 1, 1)
    runs: list[list[str]] = [[]]
    for i, v in enumerate(values):
        if v is None:
            runs.append([])
            continue
        runs[-1].append(f"{round(1 + i * step, 1)},{round(height - 1 - v * (height - 2) / max(peak, 1), 1)}")
    lines = "".join(
        f'<polyline fill="none" stroke="#3455a4" stroke-width="1.2" points="{" ".join(run)}" />'
        for run in runs
        if run
    )
    return Markup(
        f'<svg class="sparkline" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>{lines}</svg>'
    )
