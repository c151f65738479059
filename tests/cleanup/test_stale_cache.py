"""cleanup_stale_cache: SCAN + UNLINK of the ``cybervpn:`` data past its retention, in real Redis."""

from __future__ import annotations

import gc
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import redis

from actors.cleanup.metrics import deleted_total
from actors.cleanup.stale_cache import (
    SCAN_COUNT,
    TRIM_BATCH,
    UNLINK_BATCH,
    clean_stale_cache,
    cleanup_stale_cache,
    plan,
)
from actors.monitoring.health import NODES_KEY
from worker_app.config import Settings, load_settings
from worker_app.runtime import Runtime, get_runtime, set_runtime

NOW = datetime(2026, 6, 15, 4, 0, tzinfo=UTC)  # the job's 04:00 run
TODAY = NOW.date()
HOUR = timedelta(hours=1)
SLOW_MS = 50.0


@pytest.fixture
def settings() -> Settings:
    return load_settings()  # defaults: daily and payments stats 90 d, hourly 30 d, health 9 d, raw 48 h


@pytest.fixture
def job_client(redis_client: redis.Redis) -> Iterator[redis.Redis]:
    """The job's own client (same db as ``redis_client``), named so Redis's SLOWLOG tells its calls."""
    client = redis.Redis.from_url(
        os.environ["REDIS_URL"], decode_responses=True, client_name=f"cleanup-test-{uuid.uuid4().hex[:8]}"
    )
    yield client
    client.close()


@pytest.fixture
def no_gc_pauses() -> Iterator[None]:
    """Python's cyclic collector off: with this many objects alive, one of its passes can pause the
    process for 100 ms in the middle of a call, which would be timed as Redis's."""
    gc.collect()
    gc.disable()
    yield
    gc.enable()


@dataclass
class Call:
    commands: list[tuple[Any, ...]]
    took_ms: float
    result: Any


@dataclass
class Calls:
    """Every Redis call made through a client (a pipeline is one call), timed."""

    made: list[Call] = field(default_factory=list)

    def watch(self, client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
        direct, make_pipeline = client.execute_command, client.pipeline

        def execute_command(*args: Any, **options: Any) -> Any:
            return self._timed([args], lambda: direct(*args, **options))

        def pipeline(*args: Any, **kwargs: Any) -> Any:
            pipe = make_pipeline(*args, **kwargs)
            run = pipe.execute

            def execute(raise_on_error: bool = True) -> Any:
                stack = [command for command, _ in pipe.command_stack]
                return self._timed(stack, lambda: run(raise_on_error=raise_on_error))

            pipe.execute = execute  # type: ignore[method-assign]
            return pipe

        monkeypatch.setattr(client, "execute_command", execute_command)
        monkeypatch.setattr(client, "pipeline", pipeline)

    def _timed(self, commands: list[tuple[Any, ...]], call: Any) -> Any:
        started = time.perf_counter()
        result = call()
        kept = result if commands[0][0] == "ZREMRANGEBYSCORE" else None  # the rest would only weigh
        self.made.append(Call(commands, (time.perf_counter() - started) * 1000, kept))
        return result

    def of(self, name: str) -> list[Call]:
        return [c for c in self.made if any(str(cmd[0]).upper() == name for cmd in c.commands)]

    def slowest_ms(self) -> float:
        return max(c.took_ms for c in self.made)


def stamp(moment: datetime) -> float:
    return moment.timestamp()


@dataclass
class Seeded:
    """What was written, and what the job must leave: the keys and each sorted set's members."""

    expected: dict[str, dict[str, int]]
    kept_keys: set[str] = field(default_factory=set)
    kept_members: dict[str, set[str]] = field(default_factory=dict)


def counts(unlinked: int = 0, trimmed: int = 0, kept: int = 0, unparsed: int = 0) -> dict[str, int]:
    return {"unlinked": unlinked, "trimmed": trimmed, "kept": kept, "unparsed": unparsed}


class Seeder:
    """Writes keys in pipelines and remembers which must stay, and which members of each sorted set."""

    def __init__(self) -> None:
        self.commands: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self.kept: set[str] = set()
        self.members: dict[str, set[str]] = {}

    def put(self, name: str, value: str = "{}", *, stays: bool, ttl_s: int | None = None) -> None:
        self.commands.append(("set", (name, value), {"ex": ttl_s}))
        if stays:
            self.kept.add(name)

    def zset(self, name: str, scores: list[float], keep: int) -> None:
        """``scores`` newest first; the first ``keep`` stay."""
        entries = {json.dumps({"at": s, "name": name}): s for s in scores}
        self.commands.append(("zadd", (name, entries), {}))
        self.members[name] = set(list(entries)[:keep])
        self.kept.add(name)

    def other(self, method: str, name: str, *args: Any) -> None:
        self.commands.append((method, (name, *args), {}))
        self.kept.add(name)

    def write(self, client: redis.Redis) -> None:
        for start in range(0, len(self.commands), 5_000):
            with client.pipeline(transaction=False) as pipe:
                for method, args, kwargs in self.commands[start : start + 5_000]:
                    getattr(pipe, method)(*args, **kwargs)
                pipe.execute()


def dated_keys(seeder: Seeder) -> None:
    """Stats, one per day for 400 days: a day that ended 90 days ago or more is stale (k >= 91 at
    04:00), with a TTL or not. Hourly bandwidth, 130 nodes x 60 days: an hour that ended 30 days ago
    or more is stale (k >= 721). Names that do not parse, and look-alikes outside the prefix."""
    put = seeder.put
    for k in range(400):
        day = (TODAY - timedelta(days=k)).isoformat()
        put(f"cybervpn:stats:daily:{day}", stays=k <= 90, ttl_s=30 * 86_400 if k % 2 else None)
        put(f"cybervpn:stats:payments:{day}", stays=k <= 90, ttl_s=None if k % 3 else 86_400)
    for n in range(130):
        for k in range(1, 1441):
            hour = (NOW - k * HOUR).strftime("%Y-%m-%dT%H")
            put(f"cybervpn:bandwidth:hourly:node-{n}:{hour}", stays=k <= 720, ttl_s=86_400 if k % 3 else None)
    unparsable = ["stats:daily:latest", "stats:daily:2020-13-01", "stats:daily:2020-01-01:extra",
                  "stats:daily:20200101", "stats:payments:2020-02-30", "bandwidth:hourly:2020-01-01T00",
                  "bandwidth:hourly:n1:2020-01-01", "bandwidth:hourly:n1:2020-01-01T24"]  # fmt: skip
    for name in unparsable:
        put(f"cybervpn:{name}", stays=True)
    for i in range(2_400):
        day, hour = (TODAY - timedelta(days=400 + i)).isoformat(), f"2020-01-01T{i % 24:02d}"
        for name in (f"other:stats:daily:{day}", f"cybervpnx:stats:daily:{day}",
                     f"CYBERVPN:stats:payments:{day}", f"cybervpn_bandwidth:hourly:n{i}:{hour}",
                     f"xcybervpn:bandwidth:hourly:n{i}:{hour}"):  # fmt: skip
            put(name, stays=True)
    for name in ("stats:weekly:2020-01-01", "results:old", "stats:dailyx:2020-01-01"):  # no rule's
        put(f"cybervpn:{name}", stays=True)
    put("cybervpn:health:services:redis", json.dumps({"checked_at": 0}), stays=True)


def node_keys(seeder: Seeder, live: list[str], gone: list[str]) -> None:
    """Health history, a change every 12 h for 20 days: 9 days old or more goes (j >= 18). Raw
    bandwidth every 5 min for 4 days: before 48 h ago (on the hour) goes (m > 576). Leftovers of
    nodes that left the panel: without a TTL and recorded long enough ago, they go."""
    now = stamp(NOW)
    seeder.other("sadd", NODES_KEY, *live)
    for node in live + gone:
        seeder.zset(f"cybervpn:health:{node}:history", [now - j * 43_200 for j in range(40)], keep=18)
        seeder.zset(f"cybervpn:bandwidth:{node}:snapshots", [now - m * 300 for m in range(1152)], keep=577)
    seeder.zset("cybervpn:health:a:b:history", [0.0, 1.0], keep=2)  # unparsed: left alone
    seeder.put("cybervpn:health:n9:history", stays=True)  # not a sorted set: unparsed
    big = [now - m * 60 for m in range(100)] + [now - 3 * 86_400 - m for m in range(20_000)]
    seeder.zset("cybervpn:bandwidth:big:snapshots", big, keep=100)  # trimmed in steps
    seeder.zset("cybervpn:bandwidth:x:y:snapshots", [0.0], keep=1)  # unparsed
    for i, node in enumerate(gone):
        checked = now - (86_400 if i >= 80 else 10 * 86_400)
        seeder.put(f"cybervpn:health:{node}:current", json.dumps({"checked_at": checked}), stays=i >= 60,
                   ttl_s=3_600 if 60 <= i < 80 else None)  # fmt: skip
        at = now - (3_600 if i >= 70 else 3 * 86_400)
        seeder.put(f"cybervpn:bandwidth:{node}:last", json.dumps({"at": at}), stays=i >= 70)
    for node in live:  # still on the panel: kept, however old
        seeder.put(f"cybervpn:health:{node}:current", json.dumps({"checked_at": 0}), stays=True)
        seeder.put(f"cybervpn:bandwidth:{node}:last", json.dumps({"at": 0}), stays=True)
    seeder.put("cybervpn:health:bad:current", "not json", stays=True)
    seeder.other("hset", "cybervpn:health:h1:current", "checked_at", "0")


def seed(client: redis.Redis) -> Seeded:
    """About 200,000 keys, about half of them stale; some without a TTL, some under other prefixes,
    some under ``cybervpn:`` whose names do not parse."""
    seeder = Seeder()
    dated_keys(seeder)
    node_keys(seeder, [f"node-{n}" for n in range(200)], [f"gone-{n}" for n in range(100)])
    seeder.write(client)
    seeder.commands.clear()
    expected = {
        "stats:daily": counts(unlinked=309, kept=91, unparsed=4),
        "stats:payments": counts(unlinked=309, kept=91, unparsed=1),
        "bandwidth:hourly": counts(unlinked=130 * 720, kept=130 * 720, unparsed=3),
        "health:history": counts(trimmed=300 * 22, kept=300 * 18, unparsed=2),
        "bandwidth:snapshots": counts(trimmed=300 * 575 + 20_000, kept=300 * 577 + 100, unparsed=1),
        "health:current": counts(unlinked=60, kept=240, unparsed=2),
        "bandwidth:last": counts(unlinked=70, kept=230),
    }
    return Seeded(expected, seeder.kept, seeder.members)


def all_keys(client: redis.Redis) -> set[str]:
    return {str(k) for k in client.scan_iter(count=5_000)}


def members_of(client: redis.Redis, names: list[str]) -> dict[str, set[str]]:
    with client.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.zrange(name, 0, -1)
        return {name: set(found) for name, found in zip(names, pipe.execute(), strict=True)}


def slowlog_top_id(client: redis.Redis) -> int:
    entries = client.slowlog_get(1)
    return int(entries[0]["id"]) if entries else -1


@pytest.fixture
def slowlog(redis_client: redis.Redis) -> Iterator[None]:
    """Redis logs every command slower than 50 ms (or less) while the test runs."""
    threshold = int(redis_client.config_get("slowlog-log-slower-than")["slowlog-log-slower-than"])
    if 0 <= threshold <= SLOW_MS * 1000:
        yield
        return
    redis_client.config_set("slowlog-log-slower-than", int(SLOW_MS * 1000))
    yield
    redis_client.config_set("slowlog-log-slower-than", threshold)


def test_200000_keys_lose_exactly_the_stale_data_with_no_redis_call_over_50_ms(
    redis_client: redis.Redis, job_client: redis.Redis, settings: Settings, slowlog: None,
    no_gc_pauses: None, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    # Given ~200,000 keys, about half stale
    seeded = seed(redis_client)
    size = int(redis_client.dbsize())
    assert size >= 200_000
    calls = Calls()
    calls.watch(job_client, monkeypatch)
    since = slowlog_top_id(redis_client)

    # When the dry run looks: it lists what would go and deletes nothing
    dry = plan(job_client, settings, NOW)
    assert dry.counts() == seeded.expected and dry.stopped is None
    assert int(redis_client.dbsize()) == size
    assert int(redis_client.zcard("cybervpn:bandwidth:big:snapshots")) == 20_100
    assert calls.of("UNLINK") == [] and calls.of("ZREMRANGEBYSCORE") == []
    lines = dry.lines()
    assert len(lines) == len(seeded.expected)
    assert lines[0] == (
        f"stats:daily (cybervpn:stats:daily:*): 309 keys would go (oldest {TODAY - timedelta(days=399)}, "
        f"newest {TODAY - timedelta(days=91)}); 91 keys kept, 4 unparsed"
    )
    assert lines[3].startswith("health:history (cybervpn:health:*:history): 6600 members would go (oldest ")

    # When the job runs
    report = clean_stale_cache(job_client, settings, NOW)

    # Then it did what the dry run said: exactly the stale keys are gone, exactly the old members
    assert report.counts() == seeded.expected and report.stopped is None
    assert all_keys(redis_client) == seeded.kept_keys
    assert members_of(redis_client, list(seeded.kept_members)) == seeded.kept_members

    # And no call was long: small SCAN steps, UNLINKs and trims in batches, only prefixed keys
    assert max(SCAN_COUNT, UNLINK_BATCH, TRIM_BATCH) <= 1_000
    assert calls.of("KEYS") == []
    scans = [c.commands[0][2:] for c in calls.of("SCAN")]
    assert all(
        a[0] == b"MATCH" and str(a[1]).startswith("cybervpn:") and a[2:] == (b"COUNT", SCAN_COUNT)
        for a in scans
    )
    unlinks = [c.commands[0][1:] for c in calls.of("UNLINK")]
    assert sum(map(len, unlinks)) == 309 * 2 + 130 * 720 + 130 and max(map(len, unlinks)) <= UNLINK_BATCH
    assert all(str(k).startswith("cybervpn:") for keys in unlinks for k in keys)
    trims = calls.of("ZREMRANGEBYSCORE")
    assert max(sum(c.result) if isinstance(c.result, list) else c.result for c in trims) <= TRIM_BATCH
    print(f"\n{len(calls.made)} Redis calls, slowest {calls.slowest_ms():.2f} ms "
          f"(the job's own measure: {report.slowest_call} {report.slowest_call_ms} ms)")  # fmt: skip
    assert calls.slowest_ms() < SLOW_MS and 0 < report.slowest_call_ms < SLOW_MS
    name = job_client.connection_pool.connection_kwargs["client_name"]
    slow = [e for e in job_client.slowlog_get(128) if int(e["id"]) > since and e.get("client_name") == name]
    assert slow == []

    # When it runs again, it finds nothing to do
    again = clean_stale_cache(job_client, settings, NOW)
    nothing = {rule: {**c, "unlinked": 0, "trimmed": 0} for rule, c in seeded.expected.items()}
    assert again.counts() == nothing
    assert plan(job_client, settings, NOW).counts() == nothing
    assert all_keys(redis_client) == seeded.kept_keys


def test_retention_boundaries_follow_the_settings(redis_client: redis.Redis, settings: Settings) -> None:
    # Given a run at 10:30 with shorter retentions
    now = datetime(2026, 6, 15, 10, 30, tzinfo=UTC)
    short = settings.model_copy(update={"analytics_daily_ttl_days": 2, "payments_stats_ttl_days": 3,
                                        "analytics_hourly_ttl_days": 1, "health_history_days": 1,
                                        "bandwidth_retention_h": 2})  # fmt: skip
    # a day is past retention once it ended that many days ago; an hour likewise
    for k in range(1, 6):
        day = date(2026, 6, 15) - timedelta(days=k)
        redis_client.set(f"cybervpn:stats:daily:{day}", "{}")
        redis_client.set(f"cybervpn:stats:payments:{day}", "{}")
    for label in ("2026-06-14T09", "2026-06-14T10", "2026-06-14T11"):
        redis_client.set(f"cybervpn:bandwidth:hourly:n1:{label}", "{}")
    t = stamp(now)
    redis_client.zadd("cybervpn:health:n1:history", {"at-cutoff": t - 86_400, "after": t - 86_399})
    # raw bandwidth goes by whole hours: 2 h before 10:30 is 08:30, so everything before 08:00 goes
    cut = stamp(datetime(2026, 6, 15, 8, 0, tzinfo=UTC))
    redis_client.zadd(
        "cybervpn:bandwidth:n1:snapshots", {"before": cut - 1, "on-the-hour": cut, "later": cut + 1200}
    )

    report = clean_stale_cache(redis_client, short, now)

    assert sorted(str(k).rsplit(":", 1)[1] for k in redis_client.scan_iter("cybervpn:stats:daily:*")) == [
        "2026-06-13",
        "2026-06-14",
    ]  # 2026-06-13 ended 1 day 10.5 h ago; 2026-06-12 ended 2 days 10.5 h ago
    assert len(list(redis_client.scan_iter("cybervpn:stats:payments:*"))) == 3
    assert sorted(str(k)[-13:] for k in redis_client.scan_iter("cybervpn:bandwidth:hourly:*")) == [
        "2026-06-14T10",  # ended at 11:00 yesterday: 23.5 h ago
        "2026-06-14T11",
    ]
    assert redis_client.zrange("cybervpn:health:n1:history", 0, -1) == ["after"]
    assert redis_client.zrange("cybervpn:bandwidth:n1:snapshots", 0, -1) == ["on-the-hour", "later"]
    assert report.counts()["bandwidth:snapshots"] == counts(trimmed=1, kept=2)


def test_a_spent_time_budget_or_a_shutdown_stops_the_run_and_says_so(
    redis_client: redis.Redis, settings: Settings
) -> None:
    redis_client.set("cybervpn:stats:daily:2020-01-01", "{}")
    stopping = threading.Event()
    stopping.set()

    spent = clean_stale_cache(redis_client, settings.model_copy(update={"cleanup_time_budget_s": 0}), NOW)
    shut = clean_stale_cache(redis_client, settings, NOW, stop=stopping)

    assert (spent.stopped, shut.stopped) == ("time budget", "shutdown")
    assert redis_client.exists("cybervpn:stats:daily:2020-01-01")
    assert spent.lines()[-1].startswith("stopped early (time budget)")
    assert clean_stale_cache(redis_client, settings, NOW).counts()["stats:daily"]["unlinked"] == 1


@pytest.fixture
def runtime(redis_client: redis.Redis) -> Iterator[Runtime]:
    """A runtime on the test Redis db (the job needs nothing else)."""
    previous = get_runtime()
    made = Runtime(load_settings())
    set_runtime(made)
    yield made
    set_runtime(previous)
    made.redis.close()
    made.database.dispose()


def test_the_actor_logs_what_it_removed_and_counts_it(
    runtime: Runtime, redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a stale day and a sorted set with one old and one new member
    redis_client.set("cybervpn:stats:daily:2020-01-01", "{}")
    redis_client.zadd("cybervpn:health:n1:history", {"old": 1.0, "new": time.time()})
    before = deleted_total().labels("cleanup_stale_cache")._value.get()
    caplog.set_level(logging.INFO, logger="actors.cleanup")

    # When the actor runs as a worker runs it
    summary = cleanup_stale_cache()

    # Then its summary, its one line and the counter say what went
    assert summary["counts"] == {**dict.fromkeys(summary["counts"], 0), "stats:daily": 1, "health:history": 1}
    assert summary["totals"] == {"unlinked": 1, "trimmed": 1, "kept": 1, "unparsed": 0}
    assert summary["job"] == "cleanup_stale_cache" and summary["stopped"] is None
    [line] = [r for r in caplog.records if r.getMessage().startswith("cleanup job done: cleanup_stale_cache")]
    assert line.getMessage().endswith(str(summary["counts"])) and line.levelno == logging.INFO
    assert getattr(line, "patterns") == summary["patterns"]  # noqa: B009 — the summary is the line's extra
    assert deleted_total().labels("cleanup_stale_cache")._value.get() == before + 2
    assert json.loads(json.dumps(summary)) == summary  # storable as a result
    assert redis_client.zrange("cybervpn:health:n1:history", 0, -1) == ["new"]
