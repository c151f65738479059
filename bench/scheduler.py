"""Scheduler memory and firing over a long run, every job of the table enabled.

    .venv/bin/python -m bench.scheduler [--minutes 10] [--every 2] [--sample 5]

Runs, side by side on a private vhost and the database ``cybervpn_bench_scheduler``:

* ours — ``python -m scheduler`` with every job enabled (jobs whose domain has not landed get
  no-op stand-in actors from ``bench.apps.scheduler_jobs``) and every job overridden to
  ``every <--every>s``; a worker (``dramatiq worker_app bench.apps.scheduler_jobs``) consumes the
  messages, so each fire goes through the whole path (fire row, publish, claim);
* bare — ``bench.apps.bare_scheduler``: APScheduler + ``actor.send`` on a plain RabbitmqBroker, the
  same jobs and interval (the baseline a Dramatiq user would write; it imports none of our code).

Samples each scheduler's RSS (``/proc/<pid>/status`` VmRSS) every ``--sample`` seconds and prints
start (after a 10 s warm-up), end, max, growth and ours/bare. Target: ours < 80 MB throughout.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

from bench.db import recreate_database
from bench.rabbit import Rabbit
from bench.runner import stop_group
from scheduler.table import JOBS, env_name

ROOT = Path(__file__).resolve().parents[1]
DB_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/cybervpn_bench_scheduler"
TARGET_MB = 80.0


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def sample_rss(
    procs: dict[str, subprocess.Popen[bytes]], seconds: float, every_s: float, log_dir: Path
) -> dict[str, list[float]] | None:
    """RSS of the two schedulers every ``every_s`` for ``seconds``; ``None`` if one exited."""
    samples: dict[str, list[float]] = {"ours": [], "bare": []}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for name, values in samples.items():
            if procs[name].poll() is not None:
                print(f"{name} exited with {procs[name].returncode}; log: {log_dir / (name + '.log')}")
                return None
            value = rss_mb(procs[name].pid)
            if value is not None:
                values.append(value)
        if len(samples["ours"]) % max(1, round(60 / every_s)) == 0:
            minutes = len(samples["ours"]) * every_s / 60
            ours, bare = samples["ours"][-1], samples["bare"][-1]
            print(f"  {minutes:4.1f} min  ours {ours:.1f} MiB  bare {bare:.1f} MiB", flush=True)
        time.sleep(every_s)
    return samples


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.scheduler", description=(__doc__ or "").split("\n")[0])
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--every", type=int, default=2, help="seconds between fires of every job")
    p.add_argument("--sample", type=float, default=5.0, help="seconds between RSS samples")
    args = p.parse_args(argv)

    log_dir = Path(tempfile.mkdtemp(prefix="bench-scheduler-"))
    rabbit = Rabbit("amqp://guest:guest@127.0.0.1:5672", "http://127.0.0.1:15672")
    vhost = f"bench-scheduler-{uuid.uuid4().hex[:8]}"
    rabbit.create_vhost(vhost)
    recreate_database("cybervpn_bench_scheduler")
    env = {
        **os.environ, "PYTHONPATH": str(ROOT), "DATABASE_URL": DB_URL, "REDIS_URL": "redis://127.0.0.1:6379/14",
        "RABBITMQ_URL": rabbit.url(vhost), "BENCH_RABBITMQ_URL": rabbit.url(vhost), "METRICS_PORT": "0",
        "SCHEDULER_METRICS_PORT": "0", "METRICS_DIR": str(log_dir / "metrics"), "LOG_FORMAT": "json",
        "NOTIFICATION_POLL_INTERVAL_S": "0", "BENCH_EVERY_S": str(args.every),
        "BENCH_JOBS": ",".join(job.actor_name for job in JOBS),
        **{env_name(job.name): f"every {args.every}s" for job in JOBS},
    }  # fmt: skip
    worker_app_cli = str(Path(sys.executable).parent / "worker-app")
    subprocess.run([worker_app_cli, "db", "upgrade"], env=env, check=True, capture_output=True)
    procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(name: str, argv: list[str]) -> None:
        log = (log_dir / f"{name}.log").open("wb")
        procs[name] = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    # as `python -m scheduler` runs (it re-executes itself with -OO), plus the stand-in actors
    ours_code = (
        "import sys, worker_app, bench.apps.scheduler_jobs; "
        "from scheduler.service import main; sys.exit(main())"
    )
    dramatiq_bin = str(Path(sys.executable).parent / "dramatiq")
    try:
        start("worker", [dramatiq_bin, "worker_app", "bench.apps.scheduler_jobs", "-p", "1", "-t", "4",
                         "-Q", "bench_scheduler", "monitoring", "notifications"])  # fmt: skip
        start("ours", [sys.executable, "-OO", "-c", ours_code])
        start("bare", [sys.executable, "-m", "bench.apps.bare_scheduler"])
        time.sleep(10)
        samples = sample_rss(procs, args.minutes * 60, args.sample, log_dir)
        if samples is None:
            return 1
    finally:
        for proc in procs.values():
            stop_group(proc)
        rabbit.delete_vhost(vhost)

    engine = sa.create_engine(DB_URL)
    with engine.connect() as conn:
        fires = dict(
            conn.execute(sa.text("SELECT status, count(*) FROM scheduler_fires GROUP BY status")).all()
        )
    engine.dispose()
    print(
        f"\n{len(JOBS)} jobs, each every {args.every} s, for {args.minutes:g} min; "
        f"RSS sampled every {args.sample:g} s"
    )
    print(f"{'scheduler':<8} {'start MiB':>9} {'end MiB':>8} {'max MiB':>8} {'growth':>8}")
    for name, values in samples.items():
        growth = (values[-1] - values[0]) / values[0] * 100
        print(f"{name:<8} {values[0]:>9.1f} {values[-1]:>8.1f} {max(values):>8.1f} {growth:>+7.1f}%")
    ours_max, bare_max = max(samples["ours"]), max(samples["bare"])
    verdict = "PASS" if ours_max < TARGET_MB else "MISS"
    print(
        f"ours max RSS {ours_max:.1f} MiB vs target < {TARGET_MB:.0f} MB (read as MiB): {verdict}; "
        f"ours/bare max = {ours_max / bare_max:.2f}"
    )
    print(f"fires recorded: {fires}")
    print(f"logs: {log_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
