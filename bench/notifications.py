"""Notifications end to end: rows in notification_queue -> Telegram (the sandbox) -> rows updated.

    .venv/bin/python -m bench.notifications [--rows 20000] [--limited-seconds 30] [--steady-seconds 30]
        [--processes 2 --threads 8] [--only unlimited limited latency]

Three scenarios, each with a fresh `dramatiq -p 2 worker_app -Q notifications`, a fresh database
(`cybervpn_bench`), a private vhost, Redis db 14 and the sandbox in a process of its own:

* unlimited — rate limits off on both sides; N due rows, two drains; sends/s = (N - 1) / (last
  sent_at - first sent_at). Target >= 1,000/s.
* limited — TELEGRAM_GLOBAL_RATE_PER_S=30, sandbox enforcing 30/s and 1/s per chat with real 429s;
  30 x --limited-seconds rows; achieved rate vs the limit (target >= 0.95), 429s received (target 0).
* latency — product defaults (30/s), a producer inserting 20 rows/s for --steady-seconds; p50/p95/max
  of sent_at - created_at. Target p95 < 2 s.

Every scenario also counts duplicates in the sandbox's log (target 0). Exits 0 whatever the
targets say; 1 when a scenario could not be carried out.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis
import requests
import sqlalchemy as sa

from bench.db import recreate_database
from bench.rabbit import Rabbit
from bench.runner import stop_group

ROOT = Path(__file__).resolve().parents[1]
DRAMATIQ = str(Path(sys.executable).parent / "dramatiq")
DB_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/cybervpn_bench"
REDIS_URL = "redis://127.0.0.1:6379/14"
TOKEN = "100000:sandbox-bot-token"
_ENGINE = sa.create_engine(DB_URL, pool_pre_ping=True)  # connects on first use


class BenchError(Exception):
    """A scenario could not be carried out."""


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    log_dir = Path(tempfile.mkdtemp(prefix="bench-notifications-"))
    rabbit = Rabbit("amqp://guest:guest@127.0.0.1:5672", "http://127.0.0.1:15672")
    scenarios = {"unlimited": unlimited, "limited": limited, "latency": latency}
    failed = False
    with sandbox_process(log_dir) as sandbox_url:
        for name in args.only:
            print(f"\n== {name}", flush=True)
            try:
                print(scenarios[name](args, rabbit, sandbox_url, log_dir / name), flush=True)
            except BenchError as e:
                failed = True
                print(f"   could not run: {e}", flush=True)
    print(f"\nworker and sandbox logs: {log_dir}")
    return 1 if failed else 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.notifications", description=(__doc__ or "").split("\n")[0]
    )
    p.add_argument("--rows", type=int, default=20_000, help="rows for the unlimited scenario")
    p.add_argument("--limited-seconds", type=int, default=30, help="length of the 30/s scenario")
    p.add_argument("--steady-seconds", type=int, default=30, help="length of the 20/s latency scenario")
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--threads", type=int, default=8)
    p.add_argument(
        "--only",
        nargs="+",
        choices=["unlimited", "limited", "latency"],
        default=["unlimited", "limited", "latency"],
    )
    return p.parse_args(argv)


def unlimited(args: argparse.Namespace, rabbit: Rabbit, sandbox: str, log_dir: Path) -> str:
    prepare(sandbox)
    insert(args.rows)
    env = {"TELEGRAM_GLOBAL_RATE_PER_S": "0", "TELEGRAM_PER_CHAT_RATE_PER_S": "0"}
    with workers(args, rabbit, sandbox, env, log_dir) as send_drains:
        send_drains(2)
        wait_settled(args.rows, timeout_s=600)
    first, last = sent_span()
    rate = (args.rows - 1) / (last - first)
    return (
        f"   {args.rows} rows sent in {last - first:.2f}s: {rate:,.0f} sends/s "
        f"(target >= 1,000: {'PASS' if rate >= 1000 else 'MISS'}); {duplicates(sandbox)}"
    )


def limited(args: argparse.Namespace, rabbit: Rabbit, sandbox: str, log_dir: Path) -> str:
    rows = 30 * args.limited_seconds
    prepare(sandbox, enforce={"global_per_s": 30, "per_chat_per_s": 1})
    insert(rows)
    with workers(args, rabbit, sandbox, {"TELEGRAM_GLOBAL_RATE_PER_S": "30"}, log_dir) as send_drains:
        send_drains(2)
        wait_settled(rows, timeout_s=args.limited_seconds * 3 + 60)
    first, last = sent_span()
    rate = (rows - 1) / (last - first)
    stats = requests.get(f"{sandbox}/_sandbox/stats", timeout=10).json()
    throttled = int(stats["by_status"].get("429", 0))
    ok = rate >= 0.95 * 30 and throttled == 0
    return (
        f"   {rows} rows in {last - first:.2f}s: {rate:.2f} sends/s = {rate / 30:.3f} x the 30/s limit; "
        f"429s received: {throttled} (targets >= 0.95 and 0: {'PASS' if ok else 'MISS'}); "
        f"{duplicates(sandbox)}"
    )


def latency(args: argparse.Namespace, rabbit: Rabbit, sandbox: str, log_dir: Path) -> str:
    rows = 20 * args.steady_seconds
    prepare(sandbox)
    with workers(args, rabbit, sandbox, {}, log_dir) as send_drains:
        send_drains(2)
        started = time.monotonic()
        for n in range(rows):  # 20 rows/s, one INSERT each, as a backend would
            time.sleep(max(0.0, started + n / 20 - time.monotonic()))
            insert(1, offset=n)
        wait_settled(rows, timeout_s=120)
    with _ENGINE.connect() as conn:
        lags = sorted(
            float(v)
            for v in conn.execute(
                sa.text("SELECT extract(epoch FROM sent_at - created_at) FROM notification_queue")
            ).scalars()
        )
    p95 = lags[int(0.95 * (len(lags) - 1))]
    return (
        f"   {rows} rows at 20/s: enqueue-to-sent p50 {statistics.median(lags):.3f}s, p95 {p95:.3f}s, "
        f"max {lags[-1]:.3f}s (target p95 < 2s: {'PASS' if p95 < 2 else 'MISS'}); {duplicates(sandbox)}"
    )


@contextmanager
def sandbox_process(log_dir: Path) -> Iterator[str]:
    """``python -m sandbox`` on a free port, in its own process."""
    port, panel_port = _free_port(), _free_port()
    log = (log_dir / "sandbox.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "--telegram-port", str(port), "--remnawave-port", str(panel_port),
         "--cryptobot-port", "0"],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: _answers(url), 30, "the sandbox to answer")
        yield url
    finally:
        stop_group(proc)
        log.close()


@contextmanager
def workers(
    args: argparse.Namespace, rabbit: Rabbit, sandbox: str, extra: dict[str, str], log_dir: Path
) -> Iterator[Any]:
    """A fresh vhost and ``dramatiq -p N worker_app -Q notifications``; yields ``send_drains(n)``."""
    vhost = f"bench-notifications-{uuid.uuid4().hex[:8]}"
    rabbit.create_vhost(vhost)
    env = {
        **os.environ, "PYTHONPATH": str(ROOT), "DATABASE_URL": DB_URL, "REDIS_URL": REDIS_URL,
        "RABBITMQ_URL": rabbit.url(vhost), "TELEGRAM_API_URL": sandbox, "TELEGRAM_BOT_TOKEN": TOKEN,
        "METRICS_PORT": "0", "METRICS_DIR": str(log_dir / "metrics"), "LOG_FORMAT": "json", **extra,
    }  # fmt: skip
    log_dir.mkdir(parents=True, exist_ok=True)
    log = (log_dir / "worker.log").open("wb")
    argv = [DRAMATIQ, "worker_app", "-Q", "notifications", "-p", str(args.processes), "-t", str(args.threads)]
    proc = subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        _wait(lambda: _consumers(rabbit, vhost) >= args.processes, 60, "the workers to consume")

        def send_drains(count: int) -> None:
            for _ in range(count):
                publish_drain(rabbit.url(vhost))

        yield send_drains
    finally:
        stop_group(proc)
        log.close()
        rabbit.delete_vhost(vhost)


def publish_drain(amqp_url: str) -> None:
    """Enqueue ``process_notification_queue`` as a producer process would (its own broker)."""
    code = (
        "import worker_app, dramatiq, actors.notifications as n; "
        "n.process_notification_queue.send(); dramatiq.get_broker().close()"
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "RABBITMQ_URL": amqp_url,
        "METRICS_PORT": "0",
        "DATABASE_URL": DB_URL,
    }
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True)


def prepare(sandbox: str, enforce: dict[str, float] | None = None) -> None:
    """Fresh database (migrated), empty Redis db 14, sandbox reset (with limits enforced or not)."""
    _ENGINE.dispose()
    recreate_database("cybervpn_bench")
    from worker_app import migrate

    migrate.upgrade(DB_URL)
    redis.Redis.from_url(REDIS_URL).flushdb()
    requests.post(f"{sandbox}/_sandbox/reset", json={}, timeout=10).raise_for_status()
    requests.post(
        f"{sandbox}/_sandbox/faults", json={"enforce_limits": enforce}, timeout=10
    ).raise_for_status()


def insert(rows: int, offset: int = 0) -> None:
    """``rows`` due rows, one chat each (ids from 1,000,000 + offset), distinct texts."""
    statement = sa.text(
        "INSERT INTO notification_queue (telegram_id, message, notification_type) "
        "SELECT 1000000 + n, 'bench message ' || n, 'bench' "
        "FROM generate_series(CAST(:a AS int), CAST(:b AS int)) AS n"
    )
    with _ENGINE.begin() as conn:
        conn.execute(statement, {"a": offset, "b": offset + rows - 1})


def wait_settled(rows: int, timeout_s: float) -> None:
    def settled() -> bool:
        with _ENGINE.connect() as conn:
            done = conn.execute(
                sa.text("SELECT count(*) FROM notification_queue WHERE status <> 'pending'")
            ).scalar_one()
        return int(done) >= rows

    _wait(settled, timeout_s, f"{rows} rows to be settled")


def sent_span() -> tuple[float, float]:
    with _ENGINE.connect() as conn:
        first, last, failed = conn.execute(
            sa.text(
                "SELECT extract(epoch FROM min(sent_at)), extract(epoch FROM max(sent_at)), "
                "count(*) FILTER (WHERE status <> 'sent') FROM notification_queue"
            )
        ).one()
    if failed:
        raise BenchError(f"{failed} rows did not end 'sent'")
    return float(first), float(last)


def duplicates(sandbox: str) -> str:
    received = requests.get(f"{sandbox}/_sandbox/received", timeout=60).json()
    accepted = Counter(e["text"] for e in received if e["status"] == 200)
    dupes = sum(n - 1 for n in accepted.values() if n > 1)
    return f"duplicates: {dupes} ({'PASS' if dupes == 0 else 'MISS'})"


def _consumers(rabbit: Rabbit, vhost: str, queue: str = "notifications") -> int:
    from urllib.parse import quote

    reply = requests.get(f"{rabbit.api}/queues/{quote(vhost, safe='')}/{queue}", auth=rabbit.auth, timeout=10)
    return int(reply.json().get("consumers", 0)) if reply.ok else 0


def _answers(url: str) -> bool:
    try:
        return requests.get(f"{url}/_sandbox/stats", timeout=2).ok
    except requests.RequestException:
        return False


def _wait(condition: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise BenchError(f"timed out after {timeout_s:.0f}s waiting for {what}")


if __name__ == "__main__":
    sys.exit(main())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
