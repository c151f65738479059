"""Summaries across rounds, the results table and the target ratios."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from bench.contenders import Contender
from bench.runner import RunResult

TARGET_VS_BARE = 0.9
TARGET_VS_CELERY = 2.5


@dataclass(frozen=True)
class Summary:
    """A contender's medians over the rounds that completed."""

    contender: Contender
    messages: int
    runs: list[RunResult]

    @property
    def ok_runs(self) -> list[RunResult]:
        return [r for r in self.runs if r.status == "ok" and r.seconds]

    def _median(self, value: Callable[[RunResult], float | None]) -> float | None:
        values = [v for v in map(value, self.ok_runs) if v is not None]
        return statistics.median(values) if values else None

    @property
    def seconds(self) -> float | None:
        return self._median(lambda r: r.seconds)

    @property
    def rate(self) -> float | None:
        """(N - 1) completions after the first, per second."""
        return self._median(lambda r: r.rate(self.messages))

    @property
    def half_rate(self) -> float | None:
        """The second half's completions per second (start-up transients excluded)."""
        half = self.messages - self.messages // 2
        return self._median(lambda r: half / r.half_seconds if r.half_seconds else None)

    def cpu_us_per_message(self, which: str) -> float | None:
        """Median CPU µs per message in the window, of the workers or of RabbitMQ."""
        attr = "worker_cpu_s" if which == "worker" else "rabbit_cpu_s"
        return self._median(
            lambda r: getattr(r, attr) * 1e6 / (self.messages - 1) if getattr(r, attr) is not None else None
        )

    @property
    def startup_s(self) -> float | None:
        return self._median(lambda r: r.startup_s)

    @property
    def status(self) -> str:
        ok, total = len(self.ok_runs), len(self.runs)
        if ok == total:
            return "ok"
        details = "; ".join(r.detail for r in self.runs if r.status != "ok")
        return f"{ok}/{total} ok ({details})"


def summarize(contenders: Iterable[Contender], results: list[RunResult], messages: int) -> list[Summary]:
    """One summary per contender (a contender is its key and queue type: the same key runs on both)."""
    return [
        Summary(
            c,
            messages,
            [r for r in results if (r.contender.key, r.contender.queue_type) == (c.key, c.queue_type)],
        )
        for c in contenders
    ]


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


_COLUMNS = (
    ("contender", 42), ("shape", 6), ("messages", 8), ("seconds", 7), ("msg/s", 7), ("2nd-half", 8),
    ("wrk-cpu", 7), ("mq-cpu", 6), ("start-up", 8),
)  # fmt: skip


def table(summaries: list[Summary]) -> str:
    """One row per contender. msg/s = (N-1)/seconds; 2nd-half = msg/s over the last N/2;
    wrk-cpu / mq-cpu = CPU µs per message of the worker processes / of RabbitMQ in the window."""
    header = " ".join(f"{name:<{w}}" if i == 0 else f"{name:>{w}}" for i, (name, w) in enumerate(_COLUMNS))
    rows = [header + "  status", "-" * (len(header) + 8)]
    for s in summaries:
        cells = (
            s.contender.label, s.contender.shape, str(s.messages), _num(s.seconds, ".2f"),
            _num(s.rate, ",.0f"), _num(s.half_rate, ",.0f"), _num(s.cpu_us_per_message("worker"), ".0f"),
            _num(s.cpu_us_per_message("rabbit"), ".0f"), _num(s.startup_s, ".2f"),
        )  # fmt: skip
        row = " ".join(
            f"{c:<{w}}" if i == 0 else f"{c:>{w}}"
            for i, (c, (_, w)) in enumerate(zip(cells, _COLUMNS, strict=True))
        )
        rows.append(f"{row}  {s.status}")
    return "\n".join(rows)


def _best(summaries: list[Summary], role: str) -> Summary | None:
    rated = [s for s in summaries if s.contender.role == role and s.rate]
    return max(rated, key=lambda s: s.rate or 0.0) if rated else None


def _ratio(ours: float | None, base: float | None) -> float | None:
    return ours / base if ours and base else None


def _ratio_line(ours: Summary, base: Summary | None, target: float, name: str) -> str:
    left = f"{ours.contender.label} / {name}"
    if base is None or _ratio(ours.rate, base.rate) is None:
        return f"{left:<58} =    -   target >= {target:.2f}  n/a (no completed run to compare)"
    ratio = _ratio(ours.rate, base.rate) or 0.0
    half = _ratio(ours.half_rate, base.half_rate)
    verdict = "PASS" if ratio >= target else "MISS"
    return f"{left:<58} = {ratio:5.2f}   target >= {target:.2f}  {verdict}   (2nd half: {_num(half, '.2f')})"


def ratios(summaries: list[Summary], *, vs_celery: bool = True) -> str:
    """``ours / bare`` and (unless ``vs_celery`` is False: quorum runs have no Celery) ``ours / best
    Celery`` for each ours variant, against the targets."""
    bare = _best(summaries, "bare")
    celery = _best(summaries, "celery")
    lines = []
    for ours in (s for s in summaries if s.contender.role == "ours"):
        lines.append(_ratio_line(ours, bare, TARGET_VS_BARE, "bare Dramatiq"))
        if vs_celery:
            lines.append(_ratio_line(ours, celery, TARGET_VS_CELERY, "best Celery"))
    if celery is not None:
        lines.append(f"(best Celery baseline, by msg/s: {celery.contender.label})")
    if bare is not None and celery is not None:
        reference = _num(_ratio(bare.rate, celery.rate), ".2f")
        lines.append(
            f"(for reference, bare Dramatiq / best Celery = {reference}: ours' ceiling if it matched bare)"
        )
    return "\n".join(lines)


def side_by_side(classic: list[Summary], quorum: list[Summary]) -> str:
    """Each contender that ran on both queue types: its classic and quorum msg/s and their ratio."""
    by_key = {s.contender.key: s for s in quorum}
    rows = [
        f"{'contender':<42} {'classic msg/s':>13} {'quorum msg/s':>12} {'quorum/classic':>14}",
        "-" * 84,
    ]
    for c in classic:
        q = by_key.get(c.contender.key)
        if q is None:
            continue
        cells = (_num(c.rate, ",.0f"), _num(q.rate, ",.0f"), _num(_ratio(q.rate, c.rate), ".2f"))
        rows.append(f"{c.contender.label:<42} {cells[0]:>13} {cells[1]:>12} {cells[2]:>14}")
    return "\n".join(rows)
