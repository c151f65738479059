"""Memory soak: worker RSS at the start and the end of a long run of mixed load.

    .venv/bin/python -m bench.soak [--minutes 30] [--warmup-minutes 2] [--processes 2 --threads 8]

Not part of CI (it takes half an hour); issue 6 asks for RSS growth under 10 %. One
``dramatiq worker_app -p N`` on every queue, a fresh database (``cybervpn_soak``), a private vhost,
Redis db 12 and the sandbox in its own process (answering in 20 ms, no limits), then every second:

* 40 on-demand ``send_notification`` messages (their results stored in Redis);
* 20 new ``notification_queue`` rows, drained by ``process_notification_queue`` every 2 s;
* every 5 s a ``broadcast_message`` to 50 chats; every 10 s one message with wrong argument types
  (dead-lettered as ``bad_message``, the dead-letter path with its traceback);
* the workers' own heartbeats and metrics, as in production.

RSS is the sum over the worker processes (the main process too), sampled every 10 s; "start" is
the mean of the minute after the warm-up, "end" the mean of the last minute. Prints both, the
growth and the throughput; exits 1 when growth is 10 % or more, or a message was lost.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import redis
import requests
import sqlalchemy as sa

from bench.db import recreate_database
from bench.notifications import sandbox_process
from bench.rabbit import Rabbit
from bench.runner import stop_group

ROOT = Path(__file__).resolve().parents[1]
DRAMATIQ = str(Path(sys.executable).parent / "dramatiq")
DB_NAME = "cybervpn_soak"
DB_URL = f"postgresql+psycopg://postgres@127.0.0.1:5432/{DB_NAME}"
REDIS_URL = "redis://127.0.0.1:6379/12"
TOKEN = "100000:sandbox-bot-token"
SAMPLE_S = 10.0
TARGET_GROWTH = 0.10


def rss_kib(pid: int) -> int:
    """Resident set size of ``pid`` (KiB) from /proc; 0 when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def group_rss_kib(main_pid: int) -> int:
    children = Path(f"/proc/{main_pid}/task/{main_pid}/children").read_text().split()
    return rss_kib(main_pid) + sum(rss_kib(int(c)) for c in children)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    log_dir = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    rabbit = Rabbit("amqp://guest:guest@127.0.0.1:5672", "http://127.0.0.1:15672")
    vhost = f"bench-soak-{uuid.uuid4().hex[:8]}"
    rabbit.create_vhost(vhost)
    env = {
        **os.environ, "PYTHONPATH": str(ROOT), "DATABASE_URL": DB_URL, "REDIS_URL": REDIS_URL,
        "RABBITMQ_URL": rabbit.url(vhost), "TELEGRAM_BOT_TOKEN": TOKEN, "METRICS_PORT": "0",
        "METRICS_DIR": str(log_dir / "metrics"), "LOG_FORMAT": "json",
        "TELEGRAM_GLOBAL_RATE_PER_S": "0", "TELEGRAM_PER_CHAT_RATE_PER_S": "0",
    }  # fmt: skip
    os.environ.update(
        {k: env[k] for k in ("DATABASE_URL", "REDIS_URL", "RABBITMQ_URL", "TELEGRAM_BOT_TOKEN")}
    )
    recreate_database(DB_NAME)
    from worker_app import migrate  # imports worker_app: after the environment names the soak's services

    migrate.upgrade(DB_URL)
    redis.Redis.from_url(REDIS_URL).flushdb()
    try:
        with sandbox_process(log_dir) as sandbox:
            env["TELEGRAM_API_URL"] = sandbox
            requests.post(
                f"{sandbox}/_sandbox/faults", json={"latency_ms": 20}, timeout=10
            ).raise_for_status()
            return soak(args, env, log_dir)
    finally:
        rabbit.delete_vhost(vhost)
        print(f"worker and sandbox logs: {log_dir}")


def soak(args: argparse.Namespace, env: dict[str, str], log_dir: Path) -> int:
    import worker_app  # the producer side: the broker from the environment set above
    from actors.notifications import broadcast_message, process_notification_queue, send_notification

    engine = sa.create_engine(DB_URL, pool_pre_ping=True)
    worker_app.broker.declare_queue("notifications", ensure=True)
    with (log_dir / "worker.log").open("wb") as log:
        argv = [DRAMATIQ, "worker_app", "-p", str(args.processes), "-t", str(args.threads)]
        worker = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    samples: list[tuple[float, int]] = []
    sent_on_demand = rows = broadcasts = bad = 0
    started = time.monotonic()
    end = started + args.minutes * 60
    next_sample = started
    try:
        tick = 0
        while time.monotonic() < end:
            if worker.poll() is not None:
                print(f"the worker exited with {worker.returncode}; see {log_dir / 'worker.log'}")
                return 1
            for _ in range(40):
                send_notification.send(2_000_000 + sent_on_demand % 50_000, f"soak {sent_on_demand}", "soak")
                sent_on_demand += 1
            with engine.begin() as conn:
                conn.execute(
                    sa.text(
                        "INSERT INTO notification_queue (telegram_id, message, notification_type) "
                        "SELECT 3000000 + n, 'soak row ' || n, 'soak' "
                        "FROM generate_series(CAST(:a AS int), CAST(:b AS int)) AS n"
                    ),
                    {"a": rows, "b": rows + 19},
                )
            rows += 20
            if tick % 2 == 0:
                process_notification_queue.send()
            if tick % 5 == 0:
                broadcast_message.send(
                    [4_000_000 + broadcasts * 50 + i for i in range(50)], f"soak b{broadcasts}", "soak"
                )
                broadcasts += 1
            if tick % 10 == 0:
                send_notification.send_with_options(args=("not a chat id", ["wrong"], 7))
                bad += 1
            if time.monotonic() >= next_sample:
                samples.append((time.monotonic() - started, group_rss_kib(worker.pid)))
                next_sample += SAMPLE_S
            tick += 1
            time.sleep(max(0.0, started + tick - time.monotonic()))
    finally:
        stop_group(worker)
    return report(args, samples, engine, on_demand=sent_on_demand, rows=rows, broadcasts=broadcasts, bad=bad)


def report(
    args: argparse.Namespace, samples: list[tuple[float, int]], engine: sa.Engine, *, on_demand: int,
    rows: int, broadcasts: int, bad: int,
) -> int:  # fmt: skip
    warm = args.warmup_minutes * 60
    start = [kib for t, kib in samples if warm <= t < warm + 60]
    last = [kib for t, kib in samples if t >= samples[-1][0] - 60]
    start_mib, end_mib = statistics.mean(start) / 1024, statistics.mean(last) / 1024
    growth = end_mib / start_mib - 1
    with engine.connect() as conn:
        unsent = conn.execute(
            sa.text("SELECT count(*) FROM notification_queue WHERE status <> 'sent'")
        ).scalar_one()
        dead = conn.execute(sa.text("SELECT count(*) FROM dead_letters")).scalar_one()
    minutes = samples[-1][0] / 60
    print(
        f"soak {minutes:.1f} min, {args.processes} worker processes x {args.threads} threads: "
        f"{on_demand} on-demand sends, {rows} queued rows ({unsent} not sent at the end), "
        f"{broadcasts} broadcasts, {bad} bad messages ({dead} dead letters)"
    )
    print(
        f"worker RSS (all processes): start {start_mib:.1f} MiB, end {end_mib:.1f} MiB, "
        f"growth {growth:+.1%} (target < {TARGET_GROWTH:.0%})"
    )
    print(
        "RSS samples (min: MiB): " + ", ".join(f"{t / 60:.0f}: {kib / 1024:.0f}" for t, kib in samples[::6])
    )
    return 0 if growth < TARGET_GROWTH and dead == bad else 1


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=(__doc__ or "").split("\n")[0])
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--warmup-minutes", type=float, default=2.0)
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--threads", type=int, default=8)
    return p.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main())
