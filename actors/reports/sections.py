"""Pieces both reports are made of: their options, and the lines about nodes, traffic and trends.

Every function returns lines of Telegram HTML, each complete on its own (see
:mod:`actors.reports.markup`); data that is missing is said to be missing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from actors.reports.aggregates import Day
from actors.reports.markup import b, bar, code, duration, esc, i, size, sparkline
from actors.reports.nodes import NodeHealth, Period
from actors.reports.rules import Thresholds
from worker_app.config import Settings
from worker_app.timefmt import utc_stamp

#: Names listed at most in a "no traffic" line, and nodes listed at most with their incidents.
MAX_NAMES = 10
MAX_EVENTS = 6


@dataclass(frozen=True)
class Options:
    """What the reports take from the settings."""

    history_days: int = 7
    top_nodes: int = 5
    thresholds: Thresholds = field(default_factory=Thresholds)

    @classmethod
    def from_settings(cls, s: Settings) -> Options:
        thresholds = Thresholds(
            s.reports_revenue_drop_pct, s.reports_node_offline_h, s.reports_expired_growth_pct,
            s.reports_unactivated_max,
        )  # fmt: skip
        return cls(s.health_history_days, s.reports_top_nodes, thresholds)


def no_data(why: str) -> str:
    return i(f"no data: {why}")


def seen_nodes(period: Period) -> list[NodeHealth]:
    """The nodes known at some time in the period (not only gone before it)."""
    return [n for n in period.nodes if n.known_s > 0 or n.changes]


def health_lines(period: Period, options: Options, *, limit: int, times: bool) -> list[str]:
    """Overall uptime and the most troubled nodes (``times``: when each changed status)."""
    nodes = seen_nodes(period)
    known = sum(n.known_s for n in nodes)
    if not nodes or known <= 0:
        return [no_data(f"no node health history for this period (kept {options.history_days} days, "
                        "HEALTH_HISTORY_DAYS)")]  # fmt: skip
    offline = sum(n.offline_s for n in nodes)
    troubled = period.most_troubled()
    lines = [f"Uptime {(known - offline) / known * 100:.2f} % across {len(nodes)} node(s); "
             f"{len(nodes) - len(troubled)} without incident"]  # fmt: skip
    if not period.covered:
        lines.append(i(f"health history is kept {options.history_days} days (HEALTH_HISTORY_DAYS): "
                       f"known from {utc_stamp(period.known_from)} UTC only"))  # fmt: skip
    lines += [node_line(n, times=times) for n in troubled[:limit]]
    if len(troubled) > limit:
        lines.append(i(f"and {len(troubled) - limit} more node(s) with incidents"))
    return lines


def node_line(node: NodeHealth, *, times: bool) -> str:
    up = f"{node.uptime_pct:.1f} % up" if node.uptime_pct is not None else "uptime unknown"
    offline = f"offline {duration(node.offline_s)}" if node.offline_s else "not offline"
    line = f"• {b(esc(node.name))} — {up}, {offline}, {node.downs} × down, {node.changes} change(s)"
    if times and node.inside:
        events = ", ".join(
            f"{datetime.fromtimestamp(c.at, UTC):%H:%M} {esc(c.new, 12)}" for c in node.inside[:MAX_EVENTS]
        )
        line += f" ({events}{' …' if node.changes > MAX_EVENTS else ''})"
    return line


def traffic_by_node(days: Sequence[Day]) -> dict[str, tuple[str, int]]:
    """Bytes per node over ``days`` (name as last stored)."""
    total: dict[str, tuple[str, int]] = {}
    for day in days:
        for uuid, node in (day.bandwidth.by_node if day.bandwidth else {}).items():
            _, before = total.get(uuid, ("", 0))
            total[uuid] = (node.name or uuid[:8], before + node.bytes)
    return total


def traffic_lines(by_node: dict[str, tuple[str, int]], period: Period, limit: int) -> list[str]:
    """The top nodes by bytes as bars, then the nodes that carried nothing."""
    ranked = sorted(((n, b_) for n, b_ in by_node.values() if b_ > 0), key=lambda x: (-x[1], x[0]))
    top = ranked[0][1] if ranked else 0
    lines = [f"{code(bar(n_bytes, top))} {esc(name)} — {size(n_bytes)}" for name, n_bytes in ranked[:limit]]
    silent = sorted({name for name, n_bytes in by_node.values() if n_bytes <= 0}
                    | {n.name for n in seen_nodes(period) if n.uuid not in by_node})  # fmt: skip
    if silent:
        lines.append(f"No traffic: {names_line(silent)}")
    return lines


def names_line(names: Sequence[str]) -> str:
    """The first ``MAX_NAMES`` of ``names``, escaped, then ``and N more``: one line, never longer
    than a message, however many names there are."""
    shown = ", ".join(esc(n) for n in names[:MAX_NAMES])
    return shown + (f" and {len(names) - MAX_NAMES} more" if len(names) > MAX_NAMES else "")


def counts_line(label: str, counts: dict[str, int]) -> str:
    """``label: a 5, b 3, … and N more``, the largest counts first (at most ``MAX_NAMES``)."""
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])
    shown = ", ".join(f"{esc(k)} {v}" for k, v in ranked[:MAX_NAMES])
    more = f" and {len(ranked) - MAX_NAMES} more" if len(ranked) > MAX_NAMES else ""
    return f"{label}: {shown}{more}"


def trend(values: Sequence[float | None], label: str) -> str:
    """One sparkline row: ``▁▃█·▅▆▇ label``."""
    return f"{code(sparkline(values))} {label}"
