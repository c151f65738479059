"""``cleanup_stale_cache`` (04:00 daily): Redis data past its retention, found with ``SCAN`` and
removed with ``UNLINK`` — never ``KEYS``, never a key outside ``cybervpn:``.

Most of these keys carry a TTL and expire on their own; this job removes those that do not (written
by an older version or by hand) and those whose TTL outlives their retention (a backfilled day). It
decides by the date in the key's name, or by the member's score, or (a node's leftovers) by the time
the value records — never by a guess; a name that does not parse is left alone and counted:

* ``cybervpn:stats:daily:{YYYY-MM-DD}`` — the day ended ANALYTICS_DAILY_TTL_DAYS ago or more;
* ``cybervpn:stats:payments:{YYYY-MM-DD}`` — the same with PAYMENTS_STATS_TTL_DAYS;
* ``cybervpn:bandwidth:hourly:{node}:{YYYY-MM-DDTHH}`` — the hour ended ANALYTICS_HOURLY_TTL_DAYS ago;
* ``cybervpn:health:{node}:history`` — members scored HEALTH_HISTORY_DAYS ago or earlier (what
  ``check_server_health`` trims, but it no longer trims a node that left the panel);
* ``cybervpn:bandwidth:{node}:snapshots`` — members before BANDWIDTH_RETENTION_H ago, by whole hours
  (:func:`actors.monitoring.bandwidth.trim_before`);
* ``cybervpn:health:{node}:current`` and ``cybervpn:bandwidth:{node}:last`` of a node no longer in
  ``cybervpn:health:nodes``, without a TTL, whose ``checked_at`` / ``at`` is older than a gone node's
  7 days / BANDWIDTH_RETENTION_H (nothing else ever removes them).

No Redis call takes long: ``SCAN`` steps of ``SCAN_COUNT``, ``UNLINK`` of ``UNLINK_BATCH`` keys, at
most about ``TRIM_BATCH`` members per trimming call (members sharing one score go together); the
slowest call is reported. A run stops at CLEANUP_TIME_BUDGET_S; the next one starts over.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Literal, TypeVar

import dramatiq
import redis

from actors.analytics.daily import DAILY_KEY
from actors.analytics.hourly import HOUR_FORMAT, HOURLY_KEY
from actors.cleanup import QUEUE
from actors.cleanup.batches import Limits
from actors.cleanup.metrics import deleted_total
from actors.cleanup.run import log_done
from actors.monitoring.bandwidth import last_key, snapshots_key, trim_before
from actors.monitoring.health import GONE_TTL_S, NODES_KEY, current_key, history_key
from actors.payments.financial_stats import KEY as PAYMENTS_KEY
from worker_app.config import Settings
from worker_app.redis_client import PREFIX
from worker_app.runtime import get_runtime
from worker_app.timefmt import utc_stamp

JOB = "cleanup_stale_cache"
SCAN_COUNT = 500
UNLINK_BATCH = 500
TRIM_BATCH = 500
DAY_S = 86_400
T = TypeVar("T")
Kind = Literal["keys", "members", "orphans"]
COUNTS = ("unlinked", "trimmed", "kept", "unparsed")


@dataclass(frozen=True)
class Cutoff:
    """Data timed before ``at`` (unix s; or at it, when ``inclusive``) is past its retention."""

    at: float
    inclusive: bool = True

    def passed(self, moment: float) -> bool:
        return moment < self.at or (self.inclusive and moment == self.at)

    def bound(self) -> str:
        """``ZREMRANGEBYSCORE``'s max argument."""
        return repr(self.at) if self.inclusive else f"({self.at!r}"


@dataclass(frozen=True)
class Rule:
    """One key pattern (one ``*``, built by the key's owner) and how its data is judged."""

    name: str
    pattern: str
    kind: Kind
    cutoff: Cutoff
    dated: Callable[[str], tuple[float, str] | None] | None = None  # keys: the name's period
    time_field: str = ""  # orphans: the value's field recording when it was written

    def middle(self, name: str) -> str | None:
        """What ``*`` matched, or ``None``."""
        head, _, tail = self.pattern.partition("*")
        fits = name.startswith(head) and name.endswith(tail) and len(name) > len(head) + len(tail)
        return name[len(head) : len(name) - len(tail)] if fits else None

    def node(self, name: str) -> str | None:
        middle = self.middle(name)
        return middle if middle and ":" not in middle else None

    def period(self, name: str) -> tuple[float, str] | None:
        """A dated key's period end (unix s) and its date as named; ``None`` if it does not parse."""
        middle = self.middle(name)
        return self.dated(middle) if self.dated and middle else None


def _day_end(label: str) -> tuple[float, str] | None:
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", label):
        return None
    try:
        day = date.fromisoformat(label)
    except ValueError:
        return None
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() + DAY_S, label


def _hourly_end(middle: str) -> tuple[float, str] | None:
    """``{node}:{YYYY-MM-DDTHH}``: the hour's end."""
    node, _, label = middle.rpartition(":")
    if not node or ":" in node or not re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}", label):
        return None
    try:
        hour = datetime.strptime(label, HOUR_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None
    return hour.timestamp() + 3600, label


def rules(settings: Settings, now: float) -> list[Rule]:
    """Every pattern this job cleans, with its cutoff at ``now``."""
    s = settings

    def ended(days: int) -> Cutoff:
        return Cutoff(now - days * DAY_S)

    return [
        Rule("stats:daily", DAILY_KEY.format(date="*"), "keys", ended(s.analytics_daily_ttl_days), _day_end),
        Rule("stats:payments", PAYMENTS_KEY.format(date="*"), "keys", ended(s.payments_stats_ttl_days),
             _day_end),
        Rule("bandwidth:hourly", HOURLY_KEY.partition("{node}")[0] + "*", "keys",
             ended(s.analytics_hourly_ttl_days), _hourly_end),
        Rule("health:history", history_key("*"), "members", ended(s.health_history_days)),
        Rule("bandwidth:snapshots", snapshots_key("*"), "members",
             Cutoff(trim_before(now, s.bandwidth_retention_h), inclusive=False)),
        Rule("health:current", current_key("*"), "orphans", Cutoff(now - GONE_TTL_S),
             time_field="checked_at"),
        Rule("bandwidth:last", last_key("*"), "orphans", Cutoff(now - s.bandwidth_retention_h * 3600),
             time_field="at"),
    ]  # fmt: skip


@dataclass
class Tally:
    """One pattern's counts: keys unlinked, members trimmed, kept (keys, or members of sorted sets),
    names that do not parse; and the oldest and newest data affected."""

    rule: str
    pattern: str
    unit: Literal["keys", "members"]
    unlinked: int = 0
    trimmed: int = 0
    kept: int = 0
    unparsed: int = 0
    oldest: tuple[float, str] | None = None
    newest: tuple[float, str] | None = None

    def affected(self, moment: float, label: str = "") -> None:
        stamp = (moment, label or utc_stamp(moment))
        self.oldest = min(self.oldest or stamp, stamp)
        self.newest = max(self.newest or stamp, stamp)

    def counts(self) -> dict[str, int]:
        return {k: int(getattr(self, k)) for k in COUNTS}

    def line(self, dry_run: bool) -> str:
        gone = self.unlinked + self.trimmed
        verb = "would go" if dry_run else ("unlinked" if self.unit == "keys" else "trimmed")
        what = f"{gone} {self.unit} {verb}" if gone else f"no {self.unit} {'would go' if dry_run else 'gone'}"
        if self.oldest and self.newest:
            what += f" (oldest {self.oldest[1]}, newest {self.newest[1]})"
        return f"{self.rule} ({self.pattern}): {what}; {self.kept} {self.unit} kept, {self.unparsed} unparsed"


@dataclass
class Report:
    """A run (or, ``dry_run``, a plan): a :class:`Tally` per pattern, the slowest Redis call, and
    why it stopped before scanning every pattern (``time budget``, ``shutdown``), if it did."""

    dry_run: bool
    tallies: list[Tally] = field(default_factory=list)
    stopped: str | None = None
    calls: int = 0
    slowest_call: str = ""
    slowest_call_ms: float = 0.0

    def counts(self) -> dict[str, dict[str, int]]:
        """Per pattern: ``unlinked``, ``trimmed``, ``kept``, ``unparsed``."""
        return {t.rule: t.counts() for t in self.tallies}

    def removed(self) -> dict[str, int]:
        """Per pattern: keys unlinked or members trimmed (would be, in a plan)."""
        return {t.rule: t.unlinked + t.trimmed for t in self.tallies}

    def totals(self) -> dict[str, int]:
        return {k: sum(int(getattr(t, k)) for t in self.tallies) for k in COUNTS}

    def summary(self) -> dict[str, Any]:
        """``counts`` (removed per pattern, as every cleanup job's), ``patterns`` (:meth:`counts`),
        ``totals``, ``stopped``, and the Redis ``calls`` with the slowest."""
        return {"counts": self.removed(), "patterns": self.counts(), "totals": self.totals(),
                "stopped": self.stopped, "calls": self.calls, "slowest_call": self.slowest_call,
                "slowest_call_ms": self.slowest_call_ms}  # fmt: skip

    def lines(self) -> list[str]:
        """One line per pattern (what goes, or would go, and the oldest and newest of it)."""
        lines = [t.line(self.dry_run) for t in self.tallies]
        if self.stopped:
            lines.append(f"stopped early ({self.stopped}): the last pattern listed is partly scanned, "
                         "the patterns not listed are unscanned")  # fmt: skip
        return lines


class _Stop(Exception):
    """The run stops now: its time budget is spent, or the worker is shutting down."""


class _Calls:
    """The run's Redis calls, each timed (the slowest is reported), and its deadline."""

    def __init__(self, client: redis.Redis, budget_s: float, stop: threading.Event | None) -> None:
        self.client = client
        self.deadline = time.monotonic() + budget_s
        self.stop = stop
        self.count = 0
        self.slowest = ("", 0.0)

    def call(self, name: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            took = time.perf_counter() - started
            self.count += 1
            if took > self.slowest[1]:
                self.slowest = (name, took)

    def pipelined(
        self, name: str, fill: Callable[[Any], object], *, raise_on_error: bool = True
    ) -> list[Any]:
        """One round trip of the commands ``fill(pipe)`` queues; their results."""
        with self.client.pipeline(transaction=False) as pipe:
            fill(pipe)
            return self.call(name, pipe.execute, raise_on_error=raise_on_error)

    def scan(self, pattern: str) -> Iterator[list[str]]:
        """The keys matching ``pattern``, step by step, each once (``SCAN`` may repeat one)."""
        cursor = 0
        seen: set[str] = set()
        while True:
            if time.monotonic() >= self.deadline:
                raise _Stop("time budget")
            if self.stop is not None and self.stop.is_set():
                raise _Stop("shutdown")
            cursor, found = self.call("SCAN", self.client.scan, cursor, match=pattern, count=SCAN_COUNT)
            fresh = [str(k) for k in found if str(k).startswith(PREFIX) and str(k) not in seen]
            seen.update(fresh)
            if fresh:
                yield fresh
            if cursor == 0:
                return

    def unlink(self, keys: list[str]) -> int:
        """``UNLINK`` in batches; how many existed. The prefix is checked again, whatever matched."""
        keys = [k for k in keys if k.startswith(PREFIX)]
        chunks = (keys[i : i + UNLINK_BATCH] for i in range(0, len(keys), UNLINK_BATCH))
        return sum(int(self.call("UNLINK", self.client.unlink, *chunk)) for chunk in chunks)


class _Sweep:
    """One pass over every rule; ``apply=False`` only counts (the dry run)."""

    def __init__(
        self,
        client: redis.Redis,
        settings: Settings,
        now: float,
        *,
        apply: bool,
        stop: threading.Event | None,
    ) -> None:
        self.redis = _Calls(client, Limits.of(settings).budget_s, stop)
        self.rules = rules(settings, now)
        self.apply = apply
        self.nodes: set[str] = set()

    def run(self) -> Report:
        report = Report(dry_run=not self.apply)
        handlers = {"keys": self._dated, "members": self._members, "orphans": self._orphans}
        try:
            self.nodes = {str(n) for n in self.redis.call("SMEMBERS", self.redis.client.smembers, NODES_KEY)}
            for rule in self.rules:
                tally = Tally(rule.name, rule.pattern, "members" if rule.kind == "members" else "keys")
                report.tallies.append(tally)
                for keys in self.redis.scan(rule.pattern):
                    handlers[rule.kind](rule, keys, tally)
        except _Stop as e:
            report.stopped = str(e)
        report.calls = self.redis.count
        report.slowest_call, slowest_s = self.redis.slowest
        report.slowest_call_ms = round(slowest_s * 1000, 3)
        return report

    def _dated(self, rule: Rule, keys: list[str], tally: Tally) -> None:
        stale = []
        for name in keys:
            period = rule.period(name)
            if period is None:
                tally.unparsed += 1
            elif rule.cutoff.passed(period[0]):
                stale.append(name)
                tally.affected(*period)
            else:
                tally.kept += 1
        tally.unlinked += self.redis.unlink(stale) if self.apply else len(stale)

    def _members(self, rule: Rule, keys: list[str], tally: Tally) -> None:
        zsets = [k for k in keys if rule.node(k)]
        tally.unparsed += len(keys) - len(zsets)
        bound = rule.cutoff.bound()

        def fill(pipe: Any) -> None:
            for name in zsets:
                pipe.zcount(name, "-inf", bound)
                pipe.zcard(name)
                pipe.zrange(name, 0, 0, withscores=True)
                pipe.zrevrangebyscore(name, bound, "-inf", start=0, num=1, withscores=True)

        found = self.redis.pipelined("ZCOUNT", fill, raise_on_error=False) if zsets else []
        old: list[tuple[str, int]] = []
        for name, n, card, first, last in zip(zsets, *(found[i::4] for i in range(4)), strict=True):
            if isinstance(n, Exception) or isinstance(card, Exception):  # not a sorted set
                tally.unparsed += 1
                continue
            tally.kept += int(card) - int(n)
            if n:
                old.append((name, int(n)))
                for _, score in [*first[:1], *last[:1]]:  # the oldest and the newest old member
                    tally.affected(float(score))
        tally.trimmed += self._trim(old, rule.cutoff) if self.apply else sum(n for _, n in old)

    def _trim(self, old: list[tuple[str, int]], cutoff: Cutoff) -> int:
        """Remove the members past ``cutoff`` by score (so a concurrent trim by the monitoring jobs
        cannot make it remove newer ones), about TRIM_BATCH members per call at most."""
        removed = sum(self._trim_large(name, cutoff) for name, n in old if n > TRIM_BATCH)
        for group in _groups([(name, n) for name, n in old if n <= TRIM_BATCH], TRIM_BATCH):
            found = self.redis.pipelined("ZREMRANGEBYSCORE", _zrem(group, cutoff.bound()))
            removed += sum(int(n) for n in found)
        return removed

    def _trim_large(self, name: str, cutoff: Cutoff) -> int:
        removed = 0
        while True:
            nth = self.redis.call("ZRANGE", self.redis.client.zrange, name, TRIM_BATCH - 1, TRIM_BATCH - 1,
                                  withscores=True)  # fmt: skip
            last = not (nth and cutoff.passed(float(nth[0][1])))
            bound = cutoff.bound() if last else repr(float(nth[0][1]))
            removed += int(self.redis.call("ZREMRANGEBYSCORE", self.redis.client.zremrangebyscore,
                                           name, "-inf", bound))  # fmt: skip
            if last:
                return removed

    def _orphans(self, rule: Rule, keys: list[str], tally: Tally) -> None:
        names = [(k, rule.node(k)) for k in keys]
        tally.unparsed += sum(1 for _, node in names if node is None)
        tally.kept += sum(1 for _, node in names if node in self.nodes)
        candidates = [k for k, node in names if node is not None and node not in self.nodes]

        def fill(pipe: Any) -> None:
            for name in candidates:
                pipe.ttl(name)
                pipe.get(name)

        found = self.redis.pipelined("GET", fill, raise_on_error=False) if candidates else []
        stale = []
        for name, ttl, raw in zip(candidates, found[::2], found[1::2], strict=True):
            if ttl == -2:  # gone meanwhile
                continue
            written = None if isinstance(raw, Exception) else _recorded(raw, rule.time_field)
            if written is None:
                tally.unparsed += 1
            elif ttl != -1 or not rule.cutoff.passed(written):  # a TTL: it expires on its own
                tally.kept += 1
            else:
                stale.append(name)
                tally.affected(written)
        tally.unlinked += self.redis.unlink(stale) if self.apply else len(stale)


def _groups(sizes: list[tuple[str, int]], limit: int) -> Iterator[list[str]]:
    """The names in groups whose sizes add up to ``limit`` at most (a larger one alone)."""
    group: list[str] = []
    total = 0
    for name, n in sizes:
        if group and total + n > limit:
            yield group
            group, total = [], 0
        group.append(name)
        total += n
    if group:
        yield group


def _zrem(names: list[str], bound: str) -> Callable[[Any], object]:
    def fill(pipe: Any) -> None:
        for name in names:
            pipe.zremrangebyscore(name, "-inf", bound)

    return fill


def _recorded(raw: Any, time_field: str) -> float | None:
    """The time a JSON value records in ``time_field``, or ``None``."""
    try:
        value = json.loads(raw)
        return float(value[time_field])
    except (TypeError, ValueError, KeyError):
        return None


def _epoch(now: datetime | float) -> float:
    return now.timestamp() if isinstance(now, datetime) else float(now)


def clean_stale_cache(
    redis_client: redis.Redis,
    settings: Settings,
    now: datetime | float,
    *,
    stop: threading.Event | None = None,
) -> Report:
    """Unlink the keys and trim the members past their retention at ``now``; what was done. Stops
    between SCAN steps at CLEANUP_TIME_BUDGET_S or when ``stop`` is set."""
    return _Sweep(redis_client, settings, _epoch(now), apply=True, stop=stop).run()


def plan(redis_client: redis.Redis, settings: Settings, now: datetime | float) -> Report:
    """What :func:`clean_stale_cache` would remove at ``now``, removing nothing (``--dry-run``)."""
    return _Sweep(redis_client, settings, _epoch(now), apply=False, stop=None).run()


@dramatiq.actor(queue_name=QUEUE, store_results=True)
def cleanup_stale_cache() -> dict[str, Any]:
    """Redis data past its retention (04:00 daily): stale stats and hourly bandwidth keys unlinked,
    old health-history and raw-bandwidth members trimmed, gone nodes' leftovers unlinked."""
    runtime = get_runtime()
    started = time.monotonic()
    report = clean_stale_cache(runtime.redis, runtime.settings, time.time(), stop=runtime.stopping)
    summary = {"job": JOB, **report.summary(), "duration_s": round(time.monotonic() - started, 3)}
    removed = report.removed()
    if sum(removed.values()):
        deleted_total().labels(JOB).inc(sum(removed.values()))
    log_done(JOB, removed, summary, stopped=report.stopped, what="key(s) or member(s)", then="starts over")
    return summary
