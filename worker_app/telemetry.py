"""Per-actor message telemetry for the whole fleet: attempts, outcomes and durations per minute and
per hour in Redis, read back as a summary (last 5 min, 1 h, 24 h) or as a time series.

What is counted, per actor (:class:`~worker_app.middleware.telemetry.Telemetry` decides it):

* ``started`` — a worker began an attempt at a message (in the minute it began);
* ``completed`` — the attempt succeeded;
* ``retried`` — it failed and another attempt was scheduled (``PolicyRetries`` enqueued a retry);
* ``failed`` — it failed for good: no further attempt (dead-lettered: permanent error, retries
  exhausted, a retry that could not be enqueued; or rejected by a guard before it ran — bad
  arguments, too many redeliveries — which is failed without having started).

A skipped message (a duplicate, a job cancelled before or while it ran) is not counted at all.
Durations (ms, of attempts that ended in completed, retried or failed) and waits (ms in the queue
before the attempt began: from the message's enqueue, or from when it fell due when it was delayed or
a retry — option ``due_at``, set by the middleware — to the start) go into fixed log-scale
histograms: bucket ``i`` holds ``(bound(i-1), bound(i)]`` with ``bound(i) = 0.1 ms × 2^(i/4)`` (each
~19 % wider than the last, 0.1 ms to 25 h), so a percentile is exact to within its bucket.

No Redis call per message: each worker process counts in memory
(:class:`~worker_app.middleware.telemetry.Aggregator`) and adds its counts to Redis with
:func:`write`, in one transaction, every ``FLUSH_INTERVAL_S`` and at shutdown. While Redis is down
the counts stay in memory for the next flush; beyond ``MAX_PENDING_MINUTES`` distinct minutes the
oldest are dropped (logged and counted).

Redis keys (hash fields ``<actor>|started``, ``|completed``, ``|failed``, ``|retried``,
``<actor>|h<bucket>`` (durations) and ``<actor>|w<bucket>`` (waits) → count):
``cybervpn:telemetry:m:<unix minute>`` expiring ``MINUTE_KEEP_S`` after its minute, and
``cybervpn:telemetry:h:<unix hour>`` expiring ``HOUR_KEEP_S`` after its hour, both written by the
same flush. The windows read whole buckets, the current one included: ``5m`` the last 5 minute
buckets (4–5 min), ``1h`` the last 60 (59–60 min), ``24h`` the last 24 hour buckets (23–24 h) —
the 24 h window's far edge moves by whole hours.

Each actor's last error (an attempt that raised, retried or failed for good) is kept in the hash
``cybervpn:telemetry:last_error`` (actor → JSON ``{"at": unix s, "error": "Type: message"}``, the
message redacted as logs are — tokens, secrets in URLs — then cut to ``LAST_ERROR_CHARS``), written
by the same flush; one field per actor, so it stays
small.
"""

from __future__ import annotations

import json
import time
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import redis

from worker_app.redaction import redact
from worker_app.redis_client import key

FLUSH_INTERVAL_S = 5.0
MINUTE_KEEP_S = 2 * 3600
HOUR_KEEP_S = 24 * 3600
MAX_PENDING_MINUTES = 120
KINDS = ("started", "completed", "failed", "retried")
LAST_ERROR_CHARS = 300
LAST_ERROR_KEY = key("telemetry", "last_error")
DURATION_BOUNDS_MS = tuple(0.1 * 2 ** (i / 4) for i in range(120))
"""Upper bounds of the duration buckets; a duration above the last is counted in bucket 120."""


@dataclass(frozen=True)
class Window:
    """``buckets`` consecutive buckets of ``bucket_s`` seconds ending with the current one."""

    name: str
    bucket_s: int
    buckets: int

    def starts(self, now: float) -> list[int]:
        """The buckets' starts (unix s), oldest first."""
        last = int(now // self.bucket_s)
        return [(last - i) * self.bucket_s for i in reversed(range(self.buckets))]


WINDOWS = {w.name: w for w in (Window("5m", 60, 5), Window("1h", 60, 60), Window("24h", 3600, 24))}


@dataclass(slots=True)
class Counts:
    """One actor's counts (over a minute, an hour or a window) and its duration histogram."""

    started: int = 0
    completed: int = 0
    failed: int = 0
    retried: int = 0
    durations: dict[int, int] = field(default_factory=dict)
    """Histogram bucket (index into ``DURATION_BOUNDS_MS``) → attempts."""
    waits: dict[int, int] = field(default_factory=dict)
    """The same buckets for the time each attempt waited in its queue → attempts."""

    def add(self, other: Counts) -> None:
        self.started += other.started
        self.completed += other.completed
        self.failed += other.failed
        self.retried += other.retried
        for bucket, n in other.durations.items():
            self.durations[bucket] = self.durations.get(bucket, 0) + n
        for bucket, n in other.waits.items():
            self.waits[bucket] = self.waits.get(bucket, 0) + n

    def events(self) -> int:
        return self.started + self.completed + self.failed + self.retried

    def is_empty(self) -> bool:
        """Nothing counted (a ``started`` taken back by a skip leaves it so)."""
        counted = (self.started, self.completed, self.failed, self.retried, *self.durations.values(),
                   *self.waits.values())  # fmt: skip
        return not any(counted)

    def fields(self, actor: str) -> Iterator[tuple[str, int]]:
        """The Redis hash fields of these counts (zeros left out)."""
        for kind in KINDS:
            n = getattr(self, kind)
            if n:
                yield f"{actor}|{kind}", n
        for bucket, n in self.durations.items():
            if n:
                yield f"{actor}|h{bucket}", n
        for bucket, n in self.waits.items():
            if n:
                yield f"{actor}|w{bucket}", n

    def percentile_ms(self, q: float, histogram: Mapping[int, int] | None = None) -> float | None:
        """The ``q`` quantile (0–1) of the durations (or of ``histogram``, e.g. :attr:`waits`),
        interpolated within its bucket; ``None`` if none."""
        histogram = self.durations if histogram is None else histogram
        total = sum(histogram.values())
        if total <= 0:
            return None
        rank, seen = q * total, 0
        for bucket in sorted(histogram):
            n = histogram[bucket]
            if n > 0 and seen + n >= rank:
                return round(_interpolate(bucket, (rank - seen) / n), 3)
            seen += n
        return round(DURATION_BOUNDS_MS[-1], 3)

    def as_dict(self) -> dict[str, int | float | None]:
        """What the summary shows of an actor: the four counts, p50 and p95 duration in ms, and the
        p95 of the time its messages waited in the queue (ms)."""
        return {
            "started": self.started, "completed": self.completed, "failed": self.failed,
            "retried": self.retried, "p50_ms": self.percentile_ms(0.5), "p95_ms": self.percentile_ms(0.95),
            "wait_p95_ms": self.percentile_ms(0.95, self.waits),
        }  # fmt: skip


def _interpolate(bucket: int, fraction: float) -> float:
    """A duration ``fraction`` of the way through ``bucket`` (the overflow bucket: its lower bound)."""
    if bucket >= len(DURATION_BOUNDS_MS):
        return DURATION_BOUNDS_MS[-1]
    lower = DURATION_BOUNDS_MS[bucket - 1] if bucket else 0.0
    return lower + (DURATION_BOUNDS_MS[bucket] - lower) * fraction


def duration_bucket(duration_ms: float) -> int:
    """The histogram bucket of a duration."""
    return bisect_left(DURATION_BOUNDS_MS, duration_ms)


def minute_key(minute: int) -> str:
    return key("telemetry", "m", minute)


def hour_key(hour: int) -> str:
    return key("telemetry", "h", hour)


def write(
    client: redis.Redis,
    counts: Mapping[tuple[int, str], Counts],
    last_errors: Mapping[str, tuple[float, str]] | None = None,
) -> None:
    """Add ``counts`` ((unix minute, actor) → counts) to their minute and hour buckets, setting each
    bucket's expiry, and set ``last_errors`` (actor → (unix s, error)); one MULTI/EXEC, so a failure
    adds nothing. Raises :class:`redis.RedisError`."""
    minutes: dict[int, dict[str, int]] = {}
    hours: dict[int, dict[str, int]] = {}
    for (minute, actor), c in counts.items():
        by_minute = minutes.setdefault(minute, {})
        by_hour = hours.setdefault(minute // 60, {})
        for name, n in c.fields(actor):
            by_minute[name] = by_minute.get(name, 0) + n
            by_hour[name] = by_hour.get(name, 0) + n
    with client.pipeline(transaction=True) as pipe:
        for buckets, bucket_key, size_s, keep_s in (
            (minutes, minute_key, 60, MINUTE_KEEP_S),
            (hours, hour_key, 3600, HOUR_KEEP_S),
        ):
            for bucket, fields in buckets.items():
                for name, n in fields.items():
                    pipe.hincrby(bucket_key(bucket), name, n)
                pipe.expireat(bucket_key(bucket), (bucket + 1) * size_s + keep_s)
        if last_errors:
            pipe.hset(LAST_ERROR_KEY, mapping={
                actor: json.dumps({"at": round(at, 3), "error": redact(error)[:LAST_ERROR_CHARS]})
                for actor, (at, error) in last_errors.items()
            })  # fmt: skip
        pipe.execute()


def last_errors(client: redis.Redis) -> dict[str, tuple[float, str]]:
    """Each actor's last error as ``(unix s, "Type: message")``. Raises :class:`redis.RedisError`."""
    found: dict[str, tuple[float, str]] = {}
    for actor, value in dict(client.hgetall(LAST_ERROR_KEY)).items():
        try:
            data = json.loads(value)
            found[str(actor)] = (float(data["at"]), str(data["error"]))
        except (ValueError, KeyError, TypeError):
            continue  # a field this version does not understand
    return found


def parse_bucket(fields: Mapping[str, str]) -> dict[str, Counts]:
    """A bucket's hash as counts per actor (fields it does not know are ignored)."""
    actors: dict[str, Counts] = {}
    for name, value in fields.items():
        actor, _, kind = str(name).rpartition("|")
        if kind in KINDS:
            counts = actors.setdefault(actor, Counts())
            setattr(counts, kind, getattr(counts, kind) + int(value))
        elif kind[:1] in ("h", "w") and kind[1:].isdigit():
            counts = actors.setdefault(actor, Counts())
            histogram = counts.durations if kind[0] == "h" else counts.waits
            histogram[int(kind[1:])] = histogram.get(int(kind[1:]), 0) + int(value)
    return actors


def _bucket_key(window: Window, start: int) -> str:
    return minute_key(start // 60) if window.bucket_s == 60 else hour_key(start // 3600)


def _read(client: redis.Redis, keys: Iterable[str]) -> dict[str, dict[str, Counts]]:
    """Each bucket's counts per actor, read in one round trip; raises :class:`redis.RedisError`."""
    names = list(dict.fromkeys(keys))
    with client.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.hgetall(name)
        return {name: parse_bucket(found) for name, found in zip(names, pipe.execute(), strict=True)}


@dataclass(frozen=True)
class Point:
    """One bucket of a series: its start (unix s), length and counts per actor."""

    start: int
    step_s: int
    actors: dict[str, Counts]

    def totals(self) -> Counts:
        return _sum(self.actors.values())


@dataclass(frozen=True)
class WindowSummary:
    """A window's counts per actor and over all of them; ``since`` is its oldest bucket's start."""

    window: Window
    since: int
    actors: dict[str, Counts]
    totals: Counts


def _sum(parts: Iterable[Counts]) -> Counts:
    total = Counts()
    for part in parts:
        total.add(part)
    return total


def series(client: redis.Redis, window: str, now: float | None = None) -> list[Point]:
    """The window's buckets, oldest first: one point a minute for ``5m`` and ``1h``, one an hour for
    ``24h`` (minute buckets live only ``MINUTE_KEEP_S``). Raises :class:`redis.RedisError`."""
    spec = WINDOWS[window]
    starts = spec.starts(time.time() if now is None else now)
    found = _read(client, (_bucket_key(spec, s) for s in starts))
    return [Point(s, spec.bucket_s, found[_bucket_key(spec, s)]) for s in starts]


def summary(
    client: redis.Redis, windows: Iterable[str] = tuple(WINDOWS), now: float | None = None
) -> dict[str, WindowSummary]:
    """Each window's counts per actor and totals (every window in one Redis round trip). Raises
    :class:`redis.RedisError`."""
    now = time.time() if now is None else now
    specs = [WINDOWS[name] for name in windows]
    found = _read(client, (_bucket_key(w, s) for w in specs for s in w.starts(now)))
    return {spec.name: _summed(spec, now, found) for spec in specs}


def _summed(spec: Window, now: float, found: Mapping[str, dict[str, Counts]]) -> WindowSummary:
    starts = spec.starts(now)
    actors: dict[str, Counts] = {}
    for start in starts:
        for actor, counts in found[_bucket_key(spec, start)].items():
            actors.setdefault(actor, Counts()).add(counts)
    shown = {actor: c for actor, c in sorted(actors.items()) if not c.is_empty()}
    return WindowSummary(spec, starts[0], shown, _sum(shown.values()))
