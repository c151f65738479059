"""The weekly report's recommendations: a small table of rules, each with its threshold setting.

A rule looks at the week's facts (only what is stored, plus the live count of paid payments not
activated) and returns the recommendations it trips, as Telegram HTML lines; nothing when within its
threshold or when the facts it needs are incomplete — an unknown is never reported as a trend.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from actors.reports.markup import amount, b, code, duration, esc, percent_change
from actors.reports.nodes import NodeHealth
from actors.reports.periods import WEEKDAYS


@dataclass(frozen=True)
class Thresholds:
    """``REPORTS_*`` settings."""

    revenue_drop_pct: float = 20.0
    node_offline_h: float = 2.0
    expired_growth_pct: float = 10.0
    unactivated_max: int = 0


@dataclass(frozen=True)
class WeekFacts:
    """What the rules judge: this week against the previous one."""

    revenue: dict[str, Decimal]
    previous_revenue: dict[str, Decimal]
    revenue_complete: bool
    """Both weeks have revenue data for all 7 days (else a drop may only be a gap)."""
    expired: int | None
    previous_expired: int | None
    nodes: tuple[NodeHealth, ...] = ()
    unactivated: dict[str, int] | None = None
    missing: dict[str, list[date]] = field(default_factory=dict)
    """Days without a stored aggregate, by source (``analytics``, ``payments``)."""


@dataclass(frozen=True)
class Rule:
    name: str
    setting: str | None
    check: Callable[[WeekFacts, Thresholds], list[str]]


def _revenue_drop(facts: WeekFacts, t: Thresholds) -> list[str]:
    if not facts.revenue_complete:
        return []
    found = []
    for currency, before in sorted(facts.previous_revenue.items()):
        now = facts.revenue.get(currency, Decimal(0))
        pct = percent_change(float(now), float(before))
        if pct is not None and -pct > t.revenue_drop_pct:
            found.append(
                f"Revenue in {esc(currency, 12)} fell {-pct:.1f} % ({amount(now)} vs {amount(before)}; "
                f"threshold {t.revenue_drop_pct:g} %): look at failed and pending payments "
                f"({code('worker-app payments stats --days 14')}) and the payment provider."
            )
    return found


def _node_offline(facts: WeekFacts, t: Thresholds) -> list[str]:
    down = sorted(
        (n for n in facts.nodes if n.offline_s > t.node_offline_h * 3600), key=lambda n: -n.offline_s
    )
    if not down:
        return []
    names = ", ".join(f"{b(esc(n.name))} ({duration(n.offline_s)})" for n in down[:5])
    more = f" and {len(down) - 5} more" if len(down) > 5 else ""
    return [
        f"Offline more than {t.node_offline_h:g} h this week: {names}{more}. Check their hosts and "
        "providers; move users off a node that keeps failing."
    ]


def _expired_growth(facts: WeekFacts, t: Thresholds) -> list[str]:
    pct = percent_change(facts.expired, facts.previous_expired)
    if pct is None or pct <= t.expired_growth_pct:
        return []
    return [
        f"Expired users grew {pct:.1f} % ({facts.expired} vs {facts.previous_expired}; threshold "
        f"{t.expired_growth_pct:g} %): consider a renewal reminder or an offer to lapsed users."
    ]


def _unactivated(facts: WeekFacts, t: Thresholds) -> list[str]:
    stuck = sum((facts.unactivated or {}).values())
    if stuck <= t.unactivated_max:
        return []
    states = ", ".join(f"{esc(k, 16)} {v}" for k, v in sorted((facts.unactivated or {}).items()))
    return [
        f"{stuck} paid payment(s) not activated ({states}): money received, no subscription time yet. "
        f"See {code('worker-app payments unactivated')}."
    ]


def _missing(facts: WeekFacts, t: Thresholds) -> list[str]:
    gaps = [
        f"{source} on {', '.join(WEEKDAYS[d.weekday()] + ' ' + d.isoformat() for d in days)}"
        for source, days in sorted(facts.missing.items()) if days
    ]  # fmt: skip
    if not gaps:
        return []
    return [
        f"No stored aggregate for {'; '.join(gaps)}: those days are left out of the totals. Check that "
        f"aggregate_daily_stats and aggregate_financial_stats ran; recompute the days with "
        f"{code('worker-app analytics backfill --from D --to D')}."
    ]


RULES: tuple[Rule, ...] = (
    Rule("revenue_drop", "REPORTS_REVENUE_DROP_PCT", _revenue_drop),
    Rule("node_offline", "REPORTS_NODE_OFFLINE_H", _node_offline),
    Rule("expired_growth", "REPORTS_EXPIRED_GROWTH_PCT", _expired_growth),
    Rule("payments_unactivated", "REPORTS_UNACTIVATED_MAX", _unactivated),
    Rule("missing_data", None, _missing),
)


def recommendations(facts: WeekFacts, thresholds: Thresholds) -> list[tuple[str, str]]:
    """``(rule, line)`` for every recommendation a rule trips, in the table's order."""
    return [(rule.name, line) for rule in RULES for line in rule.check(facts, thresholds)]
