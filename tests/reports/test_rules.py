"""The weekly report's recommendation rules: each trips past its REPORTS_* threshold, and never on
facts it cannot trust (a gap in the data is not a drop)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from decimal import Decimal

import pytest

from actors.reports.nodes import NodeHealth
from actors.reports.rules import RULES, Thresholds, WeekFacts, recommendations
from actors.reports.sections import Options
from tests.reports.telegram_html import check
from worker_app.config import load_settings
from worker_app.errors import ConfigurationError

CALM = WeekFacts(
    revenue={"USDT": Decimal(100), "TON": Decimal(5)},
    previous_revenue={"USDT": Decimal(100), "TON": Decimal(5)},
    revenue_complete=True,
    expired=100,
    previous_expired=100,
    nodes=(NodeHealth("u1", "de-fra-1", 0, 7 * 86_400, ()),),
    unactivated={},
    missing={"analytics": [], "payments": []},
)


def tripped(facts: WeekFacts, thresholds: Thresholds | None = None) -> dict[str, str]:
    found = recommendations(facts, thresholds or Thresholds())
    for _, line in found:
        check(line)
    return dict(found)


def test_a_calm_week_trips_no_rule() -> None:
    assert tripped(CALM) == {}


def test_revenue_down_more_than_the_threshold_in_a_currency_trips_only_on_complete_data() -> None:
    down = replace(CALM, revenue={"USDT": Decimal("75.5"), "TON": Decimal(5)})
    assert (
        "Revenue in USDT fell 24.5 % (75.5 vs 100; threshold 20 %)"
        in check(tripped(down)["revenue_drop"]).text
    )
    assert tripped(replace(CALM, revenue={"USDT": Decimal(85), "TON": Decimal(5)})) == {}
    assert tripped(replace(down, revenue_complete=False)) == {}
    assert tripped(down, Thresholds(revenue_drop_pct=30)) == {}
    gone = replace(CALM, revenue={"TON": Decimal(5)})  # no USDT at all this week
    assert "Revenue in USDT fell 100.0 %" in tripped(gone)["revenue_drop"]


def test_a_node_offline_longer_than_the_threshold_trips() -> None:
    nodes = (
        NodeHealth("u1", "de-<b>", 3 * 3600, 7 * 86_400, ()),
        NodeHealth("u2", "nl", 2 * 3600, 7 * 86_400, ()),
    )
    text = check(tripped(replace(CALM, nodes=nodes))["node_offline"]).text
    assert text.startswith("Offline more than 2 h this week: de-<b> (3 h 00 min).")
    assert tripped(replace(CALM, nodes=nodes), Thresholds(node_offline_h=3)) == {}


def test_expired_users_growing_past_the_threshold_trips_and_an_unknown_does_not() -> None:
    assert "Expired users grew 15.0 % (115 vs 100" in tripped(replace(CALM, expired=115))["expired_growth"]
    assert tripped(replace(CALM, expired=105)) == {}
    assert tripped(replace(CALM, expired=115, previous_expired=None)) == {}


def test_paid_payments_not_activated_trip_above_their_threshold() -> None:
    stuck = replace(CALM, unactivated={"activating": 2, "review": 1})
    assert (
        "3 paid payment(s) not activated (activating 2, review 1)" in tripped(stuck)["payments_unactivated"]
    )
    assert tripped(stuck, Thresholds(unactivated_max=3)) == {}


def test_missing_days_trip_naming_them() -> None:
    gaps = replace(CALM, missing={"analytics": [date(2026, 12, 1)], "payments": []})
    assert "No stored aggregate for analytics on Tue 2026-12-01:" in tripped(gaps)["missing_data"]


def test_the_thresholds_are_settings() -> None:
    settings = load_settings({
        "REPORTS_REVENUE_DROP_PCT": "30", "REPORTS_NODE_OFFLINE_H": "0.5", "REPORTS_EXPIRED_GROWTH_PCT": "15",
        "REPORTS_UNACTIVATED_MAX": "4", "REPORTS_TOP_NODES": "3", "HEALTH_HISTORY_DAYS": "9",
    })  # fmt: skip
    assert Options.from_settings(settings) == Options(9, 3, Thresholds(30, 0.5, 15, 4))
    names = {r.setting for r in RULES} - {None}
    assert names == {"REPORTS_REVENUE_DROP_PCT", "REPORTS_NODE_OFFLINE_H", "REPORTS_EXPIRED_GROWTH_PCT",
                     "REPORTS_UNACTIVATED_MAX"}  # fmt: skip
    with pytest.raises(ConfigurationError, match="REPORTS_NODE_OFFLINE_H"):
        load_settings({"REPORTS_NODE_OFFLINE_H": "0"})
