"""What ``cleanup_audit_logs`` costs the backend: batched deletes on a busy table.

    .venv/bin/python -m bench.cleanup [--rows 1000000] [--due 700000] [--baseline-s 60] [--rate 300]
        [--batch-size 1000] [--pause-ms 0] [--rounds 1] [--archive]

A fresh ``cybervpn_bench`` database (migrated) gets ``--rows`` ``audit_logs`` rows spread over 180
days in insertion order, ``--due`` of them past the 90-day retention, and an identical copy of the
table (``audit_logs_copy``, same indexes). A second process plays the backend on ``audit_logs``
at ``--rate`` statements/s (two connections, autocommit): one-row ``INSERT`` of a new audit log
(half), the admin page's newest 50 and the newest 50 of one action in the last day (a quarter each).

1. **Baseline**: ``--baseline-s`` seconds of that load alone (after 5 s of warm-up).
2. **Cleanup**: the product's :func:`actors.cleanup.batches.delete_in_batches` with the
   ``cleanup_audit_logs`` targets (batches of ``--batch-size``, ``--pause-ms`` apart, no budget
   limit; with ``--archive`` into a temporary directory as CLEANUP_AUDIT_ARCHIVE does), in this
   process, while the load goes on.
3. **Unbatched**: the load stopped, one ``DELETE FROM audit_logs_copy WHERE created_at < <bound>``
   on the copy, timed.

Each of ``--rounds`` rounds starts from a fresh database. Printed per round: rows deleted, total
time, the unbatched ``DELETE``'s time, the longest cleanup transaction (BEGIN to COMMIT), the
backend's statements/s and p50/p99 latency in the baseline minute and during the cleanup, and — as
the cleanup lasts about a second, a few hundred statements — the median and largest p99 of the
baseline cut into windows as long as the cleanup. Then the medians over the rounds against the
targets: longest transaction < 250 ms, total ≤ 3 × the unbatched ``DELETE``, p99 during ≤ 2 ×
baseline.

Exits 0 whatever the targets say; 1 when the run could not be carried out.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

from bench.db import recreate_database

if TYPE_CHECKING:
    from actors.cleanup.batches import Deleted

ROOT = Path(__file__).resolve().parents[1]
DB_NAME = "cybervpn_bench"
DB_URL = f"postgresql+psycopg://postgres@127.0.0.1:5432/{DB_NAME}"
RETENTION_DAYS = 90
WARMUP_S = 5.0

_SEED = """
INSERT INTO {table} (actor, action, entity_type, entity_id, details, ip_address, created_at)
SELECT 'admin:' || (n % 50), (ARRAY['user.disable', 'user.enable', 'plan.update', 'login'])[1 + n % 4],
       'user', (n % 100000)::text,
       jsonb_build_object('n', n, 'before', 'ACTIVE', 'after', 'DISABLED', 'reason', 'bench row ' || n),
       '10.0.' || (n % 250) || '.' || (n % 200),
       CASE WHEN n < :due THEN :start + (n::bigint * :old_step) * interval '1 microsecond'
            ELSE :bound + ((n - :due)::bigint * :new_step) * interval '1 microsecond' END
FROM generate_series(0, :rows - 1) AS n
"""
_BACKEND = {
    "insert": "INSERT INTO audit_logs (actor, action, entity_type, entity_id, details, ip_address) "
              "VALUES ('admin:7', %s, 'user', %s, '{\"why\": \"bench\"}', '10.0.0.1')",
    "newest": "SELECT id, actor, action, created_at FROM audit_logs ORDER BY created_at DESC LIMIT 50",
    "by_action": "SELECT id, actor, created_at FROM audit_logs WHERE action = 'login' "
                 "AND created_at > now() - interval '1 day' ORDER BY created_at DESC LIMIT 50",
}  # fmt: skip
_MIX = ("insert", "newest", "insert", "by_action")
#: The actions of the seeded rows, and of the inserted ones in turn (so the newest rows of each
#: action, which ``by_action`` reads, stay as near as in the seed).
_ACTIONS = ("user.disable", "user.enable", "plan.update", "login")


class BenchError(Exception):
    """The run could not be carried out."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.cleanup", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--due", type=int, default=700_000)
    parser.add_argument("--baseline-s", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=300.0, help="backend statements per second")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--pause-ms", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=1, help="each on a fresh database; medians printed")
    parser.add_argument("--archive", action="store_true", help="archive the rows (CLEANUP_AUDIT_ARCHIVE)")
    parser.add_argument("--backend-load", metavar="OUT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.backend_load:
        backend_load(Path(args.backend_load), args.rate)
        return 0
    print(f"cleanup_audit_logs, {args.rows:,} rows, {args.due:,} past retention, batches of "
          f"{args.batch_size}, pause {args.pause_ms} ms, {'archived, ' if args.archive else ''}"
          f"backend load {args.rate:.0f} statements/s", flush=True)  # fmt: skip
    rounds: list[Round] = []
    try:
        for n in range(args.rounds):
            rounds.append(run(args))
            print(f"round {n + 1}: {rounds[-1].line()}", flush=True)
    except (BenchError, sa.exc.OperationalError) as e:
        print(f"bench.cleanup: {str(e).splitlines()[0]}", file=sys.stderr)
        return 1
    print(verdicts(rounds), flush=True)
    return 0


def run(args: argparse.Namespace) -> Round:
    now = datetime.now(UTC)
    bound = now - timedelta(days=RETENTION_DAYS)
    engine = prepare(args.rows, args.due, now, bound)
    with tempfile.TemporaryDirectory(prefix="bench-cleanup-") as tmp:
        out = Path(tmp) / "latencies.tsv"
        load = subprocess.Popen([sys.executable, "-m", "bench.cleanup", "--backend-load", str(out),
                                 "--rate", str(args.rate)], cwd=ROOT)  # fmt: skip
        try:
            time.sleep(WARMUP_S)
            baseline = (time.time(), time.time() + args.baseline_s)
            time.sleep(args.baseline_s)
            started = time.time()
            deleted = cleanup(args, now, Path(tmp) / "archive")
            during = (started, time.time())
        finally:
            load.send_signal(signal.SIGTERM)
            if load.wait(timeout=60) != 0:
                raise BenchError(f"the backend load process exited with {load.returncode}") from None
        samples = read_samples(out)
    unbatched_s = unbatched_delete(engine, bound)
    engine.dispose()
    total_s = during[1] - during[0]
    return Round(deleted, total_s, unbatched_s, _window(samples, baseline), _window(samples, during),
                 _slices(samples, baseline, total_s))  # fmt: skip


def prepare(rows: int, due: int, now: datetime, bound: datetime) -> sa.Engine:
    """A fresh migrated database with ``rows`` audit logs (``due`` past retention) and their copy."""
    recreate_database(DB_NAME)
    from worker_app import migrate

    migrate.upgrade(DB_URL)
    engine = sa.create_engine(DB_URL)
    start = now - timedelta(days=180)
    params = {"rows": rows, "due": due, "start": start, "bound": bound + timedelta(minutes=5),
              "old_step": int((bound - start).total_seconds() * 1e6 / max(due, 1)) - 1,
              "new_step": int((now - bound).total_seconds() * 1e6 / max(rows - due, 1)) - 1}  # fmt: skip
    print(f"seeding {rows:,} audit_logs rows ({due:,} past retention) and a copy ...", flush=True)
    with engine.begin() as conn:
        conn.execute(sa.text(_SEED.format(table="audit_logs")), params)
        conn.execute(sa.text("CREATE TABLE audit_logs_copy (LIKE audit_logs INCLUDING ALL)"))
        conn.execute(sa.text("INSERT INTO audit_logs_copy SELECT * FROM audit_logs"))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE audit_logs"))
        conn.execute(sa.text("VACUUM ANALYZE audit_logs_copy"))
        conn.execute(sa.text("CHECKPOINT"))
        found = conn.execute(sa.text("SELECT count(*) FROM audit_logs WHERE created_at < :b"), {"b": bound})
        if found.scalar_one() != due:
            raise BenchError("the seeded rows do not have the expected number past retention")
    return engine


def cleanup(args: argparse.Namespace, now: datetime, archive_dir: Path) -> Deleted:
    """The product's batched delete of the due audit logs, as ``cleanup_audit_logs`` runs it
    (archiving them into ``archive_dir`` with ``--archive``)."""
    os.environ.setdefault("DATABASE_URL", DB_URL)
    from actors.cleanup import audit_logs
    from actors.cleanup.archive import JsonlArchive
    from actors.cleanup.batches import Limits, delete_in_batches
    from worker_app.config import load_settings
    from worker_app.db import Database

    settings = load_settings({"DATABASE_URL": DB_URL})
    limits = replace(Limits.of(settings), batch_size=args.batch_size, budget_s=3600,
                     pause_s=args.pause_ms / 1000)  # fmt: skip
    database = Database(DB_URL)
    archive = JsonlArchive(archive_dir, audit_logs.TABLE) if args.archive else None
    try:
        return delete_in_batches(database, audit_logs.JOB, audit_logs.targets(settings, now), limits,
                                 archive=archive)  # fmt: skip
    finally:
        database.dispose()


def unbatched_delete(engine: sa.Engine, bound: datetime) -> float:
    """Seconds of one ``DELETE`` of the same rows from the copy, in one transaction."""
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM audit_logs_copy WHERE created_at < :b"), {"b": bound})
    return time.perf_counter() - started


def backend_load(out: Path, rate: float) -> None:
    """The backend's statements on ``audit_logs`` at ``rate`` per second on two connections until
    SIGTERM; then ``<wall time> <seconds> <kind>`` per statement into ``out``."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    samples: list[tuple[float, float, str]] = []
    threads = [threading.Thread(target=_backend_thread, args=(n, rate / 2, stop, samples)) for n in range(2)]
    for t in threads:
        t.start()
    while not stop.wait(0.5):
        pass
    for t in threads:
        t.join()
    out.write_text("".join(f"{at:.6f}\t{seconds:.6f}\t{kind}\n" for at, seconds, kind in samples))


def _backend_thread(
    n: int, rate: float, stop: threading.Event, samples: list[tuple[float, float, str]]
) -> None:
    import psycopg

    with psycopg.connect(DB_URL.replace("postgresql+psycopg", "postgresql"), autocommit=True) as conn:
        began, i = time.monotonic(), 0
        while not stop.is_set():
            kind = _MIX[(i + n) % len(_MIX)]
            at, t0 = time.time(), time.perf_counter()
            values = (_ACTIONS[i // 2 % len(_ACTIONS)], str(i)) if kind == "insert" else None
            cursor = conn.execute(_BACKEND[kind], values)
            if kind != "insert":
                cursor.fetchall()
            samples.append((at, time.perf_counter() - t0, kind))
            i += 1
            stop.wait(max(0.0, began + i / rate - time.monotonic()))


def read_samples(out: Path) -> list[tuple[float, float]]:
    if not out.exists():
        raise BenchError("the backend load process wrote no latencies")
    rows = (line.split("\t") for line in out.read_text().splitlines())
    return [(float(at), float(seconds)) for at, seconds, _kind in rows]


def _window(samples: list[tuple[float, float]], span: tuple[float, float]) -> tuple[int, float, float, float]:
    """Statements, statements/s, p50 and p99 (ms) of the statements started within ``span``."""
    inside = sorted(s for at, s in samples if span[0] <= at < span[1])
    if not inside:
        raise BenchError("no backend statement in a measured window")

    def at_q(q: float) -> float:
        return inside[min(len(inside) - 1, int(q * len(inside)))] * 1000

    return len(inside), len(inside) / (span[1] - span[0]), at_q(0.50), at_q(0.99)


def _slices(
    samples: list[tuple[float, float]], span: tuple[float, float], length_s: float
) -> tuple[float, float]:
    """The median and the largest p99 (ms) of the baseline cut into windows as long as the cleanup:
    what a window that short shows with no cleanup at all."""
    p99s = []
    start = span[0]
    while start + length_s <= span[1]:
        p99s.append(_window(samples, (start, start + length_s))[3])
        start += length_s
    return (statistics.median(p99s), max(p99s)) if p99s else (0.0, 0.0)


@dataclass
class Round:
    """One round's figures; the windows are (statements, statements/s, p50 ms, p99 ms); ``slices``
    the median and largest p99 of baseline windows as long as the cleanup."""

    deleted: Deleted
    total_s: float
    unbatched_s: float
    baseline: tuple[int, float, float, float]
    during: tuple[int, float, float, float]
    slices: tuple[float, float]

    @property
    def time_ratio(self) -> float:
        return self.total_s / self.unbatched_s

    @property
    def longest_ms(self) -> float:
        return self.deleted.longest_batch_s * 1000

    @property
    def p99_ratio(self) -> float:
        return self.during[3] / self.baseline[3]

    def line(self) -> str:
        (bn, br, b50, b99), (n, r, p50, p99) = self.baseline, self.during
        return (
            f"{sum(self.deleted.counts.values()):,} rows deleted in {self.deleted.batches} batches "
            f"({self.deleted.stopped or 'complete'}) in {self.total_s:.2f} s; one unbatched DELETE of the "
            f"same rows (the copy, no load) {self.unbatched_s:.2f} s: ratio {self.time_ratio:.2f}; longest "
            f"cleanup transaction {self.longest_ms:.1f} ms; backend baseline {bn:,} statements ({br:.0f}/s) "
            f"p50 {b50:.2f} ms p99 {b99:.2f} ms, during the cleanup {n:,} ({r:.0f}/s) p50 {p50:.2f} ms "
            f"p99 {p99:.2f} ms: p99 ratio {self.p99_ratio:.2f}; baseline windows of {self.total_s:.2f} s: "
            f"p99 median {self.slices[0]:.2f} ms, largest {self.slices[1]:.2f} ms"
        )


def verdicts(rounds: list[Round]) -> str:
    """The medians over the rounds against the targets."""

    def median(values: list[float]) -> float:
        return statistics.median(values)

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "MISS"

    longest = median([r.longest_ms for r in rounds])
    times = median([r.time_ratio for r in rounds])
    p99 = median([r.p99_ratio for r in rounds])
    return (
        f"median of {len(rounds)}: longest cleanup transaction {longest:.1f} ms (target < 250: "
        f"{verdict(longest < 250)}); total time / unbatched DELETE {times:.2f} (target ≤ 3: "
        f"{verdict(times <= 3)}); backend p99 during / baseline {p99:.2f} (target ≤ 2: {verdict(p99 <= 2)})"
    )


if __name__ == "__main__":
    raise SystemExit(main())
