"""What ``generate_data_export`` costs: 1,000,000 payments to CSV against ``psql``'s ``\\copy``.

    .venv/bin/python -m bench.export [--rows 1000000] [--batch-rows 1000] [--rounds 3]

A fresh ``cybervpn_bench_export`` database (migrated) gets ``--rows`` ``payments`` spread over a
year (amounts with 8 decimals; one in ten with an error message holding a comma, quotes and a line
break, so the CSV has fields to quote). Each round, in this order:

1. **psql**: ``psql -c "\\copy (SELECT <the export's own SELECT> ORDER BY created_at, id) TO <file>
   WITH (FORMAT csv, HEADER)"`` — the same rows, columns and formatting, PostgreSQL writing the CSV;
2. **export**: the product's :func:`actors.bulk.exports.export_data` (``payments``, ``csv``, no date
   range, ``EXPORT_BATCH_ROWS`` = ``--batch-rows``, local storage in a temporary directory) in a
   fresh Python process, which reports its RSS before the export (everything imported, the engine
   made; its peak RSS reset there through ``/proc/self/clear_refs``) and its peak RSS (``VmHWM``) after.

Then the exported file is parsed back with the ``csv`` module: its row count and the sum of its
amounts (a ``Decimal`` checksum) must equal ``count(*)`` and ``sum(amount)`` of the table.

Printed per round: rows/s of each, the ratio export/psql speed, the exporting process's RSS growth.
Then the medians against the targets: speed ≥ 0.3 × psql's, RSS growth < 50 MB.

Exits 0 whatever the targets say; 1 when the run could not be carried out (or the file does not
round-trip).
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa

from bench.db import recreate_database

ROOT = Path(__file__).resolve().parents[1]
DB_NAME = "cybervpn_bench_export"
DB_URL = f"postgresql+psycopg://postgres@127.0.0.1:5432/{DB_NAME}"
MB = 1_000_000

_SEED = """
INSERT INTO payments (user_id, telegram_id, provider, external_id, amount, currency, status,
                      subscription_days, paid_at, created_at, updated_at, error_message)
SELECT n % 50000, CASE WHEN n % 7 <> 0 THEN 100000000 + n % 50000 END, 'cryptobot', 'inv-' || n,
       round((random() * 1000)::numeric, 8), (ARRAY['USDT', 'TON', 'BTC'])[1 + n % 3],
       (ARRAY['pending', 'completed', 'failed', 'expired'])[1 + n % 4], CASE WHEN n % 4 = 1 THEN 30 END,
       CASE WHEN n % 4 = 1 THEN now() - (n * 31) * interval '1 second' END,
       now() - (n * 31) * interval '1 second' - interval '1 minute',
       now() - (n * 31) * interval '1 second',
       CASE WHEN n % 10 = 2 THEN 'declined, "risk"' || chr(10) || 'code ' || n END
FROM generate_series(1, :rows) AS n
"""


class BenchError(Exception):
    """The run could not be carried out."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.export", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch-rows", type=int, default=1000, help="EXPORT_BATCH_ROWS")
    parser.add_argument("--rounds", type=int, default=3, help="medians printed")
    parser.add_argument("--export-into", metavar="DIR", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.export_into:
        print(json.dumps(export_in_this_process(Path(args.export_into), args.batch_rows)), flush=True)
        return 0
    print(f"generate_data_export: {args.rows:,} payments to CSV, batches of {args.batch_rows:,}, "
          f"{args.rounds} round(s), against psql \\copy of the same SELECT", flush=True)  # fmt: skip
    try:
        expected = prepare(args.rows)
        rounds = []
        for n in range(args.rounds):
            rounds.append(run_round(args.batch_rows, expected))
            print(f"round {n + 1}: {rounds[-1].line()}", flush=True)
    except (BenchError, sa.exc.OperationalError, subprocess.CalledProcessError) as e:
        print(f"bench.export: {str(e).splitlines()[0]}", file=sys.stderr)
        return 1
    print(verdicts(rounds), flush=True)
    return 0


def prepare(rows: int) -> tuple[int, Decimal]:
    """A fresh migrated database with ``rows`` payments; their count and the sum of their amounts."""
    recreate_database(DB_NAME)
    from worker_app import migrate

    migrate.upgrade(DB_URL)
    engine = sa.create_engine(DB_URL)
    print(f"seeding {rows:,} payments ...", flush=True)
    with engine.begin() as conn:
        conn.execute(sa.text(_SEED), {"rows": rows})
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE payments"))
        conn.execute(sa.text("CHECKPOINT"))
        count, total = conn.execute(sa.text("SELECT count(*), sum(amount) FROM payments")).one()
    engine.dispose()
    return int(count), Decimal(total)


@dataclass
class Round:
    rows: int
    export_s: float
    psql_s: float
    rss_before_kib: int
    rss_peak_kib: int
    file_bytes: int

    @property
    def ratio(self) -> float:
        """Our speed as a fraction of psql's (1.0: as fast)."""
        return self.psql_s / self.export_s

    @property
    def growth_mb(self) -> float:
        return (self.rss_peak_kib - self.rss_before_kib) * 1024 / MB

    def line(self) -> str:
        return (
            f"export {self.rows:,} rows ({self.file_bytes / MB:.1f} MB) in {self.export_s:.2f} s = "
            f"{self.rows / self.export_s:,.0f} rows/s; psql \\copy {self.psql_s:.2f} s = "
            f"{self.rows / self.psql_s:,.0f} rows/s; ratio {self.ratio:.2f}; RSS "
            f"{self.rss_before_kib / 1024:.1f} MiB before, peak {self.rss_peak_kib / 1024:.1f} MiB: growth "
            f"{self.growth_mb:.1f} MB; the file round-trips (rows and amount checksum)"
        )


def run_round(batch_rows: int, expected: tuple[int, Decimal]) -> Round:
    with tempfile.TemporaryDirectory(prefix="bench-export-") as tmp:
        psql_s = psql_copy(Path(tmp) / "psql.csv")
        child = subprocess.run(
            [sys.executable, "-m", "bench.export", "--export-into", str(Path(tmp) / "exports"),
             "--batch-rows", str(batch_rows)],
            cwd=ROOT, capture_output=True, text=True, check=True,
        )  # fmt: skip
        report = json.loads(child.stdout.strip().splitlines()[-1])
        exported = Path(report["path"])
        check_round_trip(exported, expected)
        return Round(report["rows"], report["seconds"], psql_s, report["rss_before_kib"],
                     report["rss_peak_kib"], exported.stat().st_size)  # fmt: skip


def psql_copy(out: Path) -> float:
    """Seconds of psql's ``\\copy`` of the export's own SELECT to a CSV file."""
    from actors.bulk.export_sources import PAYMENT_SELECT

    query = " ".join(f"{PAYMENT_SELECT} ORDER BY created_at, id".split())
    command = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", DB_NAME, "-v", "ON_ERROR_STOP=1", "-qc",
               f"\\copy ({query}) TO '{out}' WITH (FORMAT csv, HEADER)"]  # fmt: skip
    started = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - started


def export_in_this_process(into: Path, batch_rows: int) -> dict[str, object]:
    """The product's export of every payment to CSV, timed, with this process's RSS around it."""
    from datetime import UTC, datetime

    from actors.bulk.exports import ExportRequest, Sources, export_data
    from worker_app.config import load_settings
    from worker_app.exports import LocalStorage
    from worker_app.runtime import Runtime

    settings = load_settings(
        {"DATABASE_URL": DB_URL, "EXPORT_DIR": str(into), "EXPORT_BATCH_ROWS": str(batch_rows)}
    )
    runtime = Runtime(settings)
    sources = Sources(runtime.database, runtime.remnawave, batch_rows)
    runtime.database.engine.connect().close()  # the pool's first connection, before the baseline
    before = reset_peak_rss()
    started = time.perf_counter()
    result = export_data(ExportRequest.of("payments", None, "csv"), str(uuid.uuid4()), sources=sources,
                         storage=LocalStorage(into), settings=settings, now=datetime.now(UTC))  # fmt: skip
    seconds = time.perf_counter() - started
    peak = _status_kib("VmHWM")
    job_dir = next(into.iterdir())
    return {"rows": result["rows"], "seconds": seconds, "rss_before_kib": before, "rss_peak_kib": peak,
            "path": str(job_dir / result["file_name"])}  # fmt: skip


def reset_peak_rss() -> int:
    """Reset this process's peak RSS (``VmHWM``) to its current RSS (``clear_refs`` 5, Linux ≥ 4.0);
    the current RSS in KiB."""
    Path("/proc/self/clear_refs").write_text("5")
    current, peak = _status_kib("VmRSS"), _status_kib("VmHWM")
    if peak > current + 1024:
        raise BenchError("cannot reset the peak RSS (/proc/self/clear_refs)")
    return current


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise BenchError(f"/proc/self/status has no {field}")


def check_round_trip(path: Path, expected: tuple[int, Decimal]) -> None:
    """The file parsed back has the table's row count and sum of amounts; :class:`BenchError` if not."""
    count, total = 0, Decimal(0)
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        for row in reader:
            count += 1
            total += Decimal(row["amount"])
    if (count, total) != expected:
        raise BenchError(f"the export does not round-trip: {count:,} rows, amounts {total} != {expected}")


def verdicts(rounds: list[Round]) -> str:
    def verdict(ok: bool) -> str:
        return "PASS" if ok else "MISS"

    ratio = statistics.median(r.ratio for r in rounds)
    growth = statistics.median(r.growth_mb for r in rounds)
    speed = statistics.median(r.rows / r.export_s for r in rounds)
    return (
        f"median of {len(rounds)}: {speed:,.0f} rows/s; speed / psql's {ratio:.2f} (target ≥ 0.3: "
        f"{verdict(ratio >= 0.3)}); RSS growth {growth:.1f} MB (target < 50: {verdict(growth < 50)})"
    )


if __name__ == "__main__":
    raise SystemExit(main())
