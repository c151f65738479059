"""The dashboard's SVG charts (worker_app.web.charts), no services needed."""

from __future__ import annotations

import re

import pytest

from worker_app.web.charts import line_chart

STARTS = [1_700_000_000 + 60 * n for n in range(4)]


def points(svg: str, series: str) -> list[tuple[float, float]]:
    found = re.search(rf'data-series="{series}"[^>]* points="([^"]+)"', svg)
    assert found is not None, svg
    return [(float(x), float(y)) for x, y in (p.split(",") for p in found.group(1).split())]


def test_series_share_one_scale_from_zero_to_the_peak() -> None:
    svg = str(line_chart("c", STARTS, {"done": [0, 2, 4, 1], "failed": [0, 0, 1, 0]}, width=100, height=60))
    done, failed = points(svg, "done"), points(svg, "failed")
    bottom, top = done[0][1], done[2][1]  # 0 and the peak, 4
    assert bottom > top and failed[2][1] == bottom - (bottom - top) / 4
    assert [x for x, _y in done] == [x for x, _y in failed] and done[0][0] < done[-1][0]
    assert ">4</text>" in svg and "done (7)" in svg and "failed (1)" in svg
    assert ">22:13</text>" in svg and ">22:16 UTC</text>" in svg  # the first and last buckets' times
    assert svg.count("<circle") == 4  # a tooltip per non-zero point


def test_names_are_escaped_and_an_empty_chart_still_draws() -> None:
    svg = str(line_chart("c", STARTS, {"<b>x</b>": [0, 0, 0, 0]}))
    assert "<b>" not in svg and "&lt;b&gt;x&lt;/b&gt; (0)" in svg
    assert str(line_chart("c", [], {})).startswith('<svg id="c"')
    with pytest.raises(ValueError, match="one value per bucket"):
        line_chart("c", STARTS, {"short": [1]})
