"""Summaries across rounds, the results table and the target ratios."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass

from bench.contenders import Contender
from bench.runner import RunResult

TARGET_VS_BARE = 0.9
TARGET_VS_CELERY = 2.5


@dataclass(frozen=True)
class Summary:
    """A contender's median over the rounds that completed."""

    contender: Contender
    messages: int
    runs: list[RunResult]

    @property
    def ok_runs(self) -> list[RunResult]:
        return [r for r in self.runs if r.status == "ok" and r.seconds]

    @property
    def seconds(self) -> float | None:
        ok = self.ok_runs
        return statistics.median(r.seconds for r in ok if r.seconds) if ok else None

    @property
    def rate(self) -> float | None:
        return (self.messages - 1) / self.seconds if self.seconds else None

    @property
    def startup_s(self) -> float | None:
        values = [r.startup_s for r in self.ok_runs if r.startup_s is not None]
        return statistics.median(values) if values else None

    @property
    def status(self) -> str:
        ok, total = len(self.ok_runs), len(self.runs)
        if ok == total:
            return "ok"
        details = "; ".join(r.detail for r in self.runs if r.status != "ok")
        return f"{ok}/{total} ok ({details})"


def summarize(contenders: Iterable[Contender], results: list[RunResult], messages: int) -> list[Summary]:
    return [Summary(c, messages, [r for r in results if r.contender.key == c.key]) for c in contenders]


def _num(value: float | None, fmt: str) -> str:
    return "—" if value is None else format(value, fmt)


def table(summaries: list[Summary]) -> str:
    """The results table: one row per contender."""
    header = (
        f"{'contender':<44} {'shape':>7} {'messages':>9} {'seconds':>8} {'msg/s':>8} {'start-up':>8}  status"
    )
    rows = [header, "-" * len(header)]
    for s in summaries:
        rows.append(
            f"{s.contender.label:<44} {s.contender.shape:>7} {s.messages:>9} {_num(s.seconds, '.2f'):>8} "
            f"{_num(s.rate, ',.0f'):>8} {_num(s.startup_s, '.2f'):>8}  {s.status}"
        )
    return "\n".join(rows)


def _best(summaries: list[Summary], role: str) -> Summary | None:
    rated = [s for s in summaries if s.contender.role == role and s.rate]
    return max(rated, key=lambda s: s.rate or 0.0) if rated else None


def _ratio_line(ours: Summary, base: Summary | None, target: float, name: str) -> str:
    left = f"{ours.contender.label} / {name}"
    if ours.rate is None or base is None or base.rate is None:
        return f"{left:<62} =    —   target ≥ {target:.2f}  n/a (a run did not complete)"
    ratio = ours.rate / base.rate
    verdict = "PASS" if ratio >= target else "MISS"
    return f"{left:<62} = {ratio:5.2f}   target ≥ {target:.2f}  {verdict}"


def ratios(summaries: list[Summary]) -> str:
    """``ours / bare`` and ``ours / best Celery`` for each ours variant, against the targets."""
    bare = _best(summaries, "bare")
    celery = _best(summaries, "celery")
    lines = []
    for ours in (s for s in summaries if s.contender.role == "ours"):
        lines.append(_ratio_line(ours, bare, TARGET_VS_BARE, "bare Dramatiq"))
        lines.append(_ratio_line(ours, celery, TARGET_VS_CELERY, "best Celery"))
    if celery is not None:
        lines.append(f"(best Celery baseline: {celery.contender.label})")
    return "\n".join(lines)
