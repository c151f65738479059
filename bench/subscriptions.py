"""A full scan of 100,000 panel users must cost ≤ 101 stream calls and almost no worker memory.

    .venv/bin/python -m bench.subscriptions [--users 100000] [--rounds 2]

Each round: the sandbox (`python -m sandbox`, Telegram and Remnawave on free ports) seeded with
`--users` users (mixed statuses, expiries over ±10 days, 20 % without a telegram id), a fresh
database (`cybervpn_bench`), Redis db 14, a private vhost, and one
`dramatiq -p 1 -t 1 worker_app -Q subscriptions` process. Once the worker consumes, its child's
resident memory is read for 3 s (the idle baseline, max of the samples); then
`check_expiring_subscriptions` is sent and the child's RSS sampled every 20 ms until the run's
`subscriptions job done` line. Printed per round: stream calls, wall time (send → done line), the
reminders queued, idle RSS, peak RSS and the growth, against the targets (≤ ⌈users / 1000⌉ + 1
stream calls, growth < 30 MB over the idle worker). Exits 0 whatever the targets say; 1 when a run
could not be carried out.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from bench.notifications import (
    DB_URL,
    REDIS_URL,
    ROOT,
    BenchError,
    _answers,
    _consumers,
    _free_port,
    _wait,
    prepare,
)
from bench.rabbit import Rabbit
from bench.runner import stop_group

DRAMATIQ = str(Path(sys.executable).parent / "dramatiq")
TARGET_GROWTH_MB = 30.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.subscriptions", description=__doc__)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    rabbit = Rabbit("amqp://guest:guest@127.0.0.1:5672", "http://127.0.0.1:15672")
    try:
        with tempfile.TemporaryDirectory(prefix="bench-subscriptions-") as tmp:
            for round_no in range(1, args.rounds + 1):
                print(one_round(args.users, rabbit, Path(tmp) / f"round-{round_no}"), flush=True)
    except BenchError as e:
        print(f"bench.subscriptions: {e}", file=sys.stderr)
        return 1
    return 0


def one_round(users: int, rabbit: Rabbit, log_dir: Path) -> str:
    log_dir.mkdir(parents=True)
    with sandbox(log_dir) as (telegram, panel):
        prepare(telegram)
        spec = {
            "count": users, "seed": 15, "expire_within_days": [-10, 10], "without_telegram_fraction": 0.2,
            "statuses": {"ACTIVE": 0.6, "LIMITED": 0.1, "DISABLED": 0.15, "EXPIRED": 0.15},
        }  # fmt: skip
        requests.post(f"{panel}/_sandbox/users", json=spec, timeout=120).raise_for_status()
        with worker(rabbit, telegram, panel, log_dir) as (child, send):
            idle = peak_rss_mb(child, 3.0)
            started = time.monotonic()
            sampler = Sampler(child)
            send()
            _wait(lambda: "subscriptions job done" in (log_dir / "worker.log").read_text(), 600, "the run")
            wall_s = time.monotonic() - started
            peak = sampler.stop()
        done = _done_line(log_dir / "worker.log")
        calls = len(requests.get(f"{panel}/_sandbox/calls", params={"path_prefix": "/api/users/stream"},
                                 timeout=60).json())  # fmt: skip
    limit = math.ceil(users / 1000) + 1
    growth = peak - idle
    return (
        f"{users:,} users: {calls} stream calls (target ≤ {limit}: {'met' if calls <= limit else 'MISSED'}), "
        f"wall {wall_s:.1f} s, reminders queued {done['counts'].get('queued', 0):,}; worker RSS idle "
        f"{idle:.1f} MB, peak {peak:.1f} MB, growth {growth:.1f} MB (target < {TARGET_GROWTH_MB:.0f} MB: "
        f"{'met' if growth < TARGET_GROWTH_MB else 'MISSED'})"
    )


@contextmanager
def sandbox(log_dir: Path) -> Iterator[tuple[str, str]]:
    """``python -m sandbox`` with Telegram and Remnawave on free ports; yields both base URLs."""
    telegram_port, panel_port = _free_port(), _free_port()
    log = (log_dir / "sandbox.log").open("wb")
    argv = [sys.executable, "-m", "sandbox", "--telegram-port", str(telegram_port)]
    proc = subprocess.Popen(
        [*argv, "--remnawave-port", str(panel_port), "--cryptobot-port", "0"],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    urls = (f"http://127.0.0.1:{telegram_port}", f"http://127.0.0.1:{panel_port}")
    try:
        _wait(lambda: _answers(urls[1]), 30, "the sandbox panel to answer")
        yield urls
    finally:
        stop_group(proc)
        log.close()


@contextmanager
def worker(rabbit: Rabbit, telegram: str, panel: str, log_dir: Path) -> Iterator[tuple[int, object]]:
    """One worker process on a fresh vhost; yields its child's pid and a function sending the job."""
    vhost = f"bench-subscriptions-{uuid.uuid4().hex[:8]}"
    rabbit.create_vhost(vhost)
    env = {
        **os.environ, "PYTHONPATH": str(ROOT), "DATABASE_URL": DB_URL, "REDIS_URL": REDIS_URL,
        "RABBITMQ_URL": rabbit.url(vhost), "TELEGRAM_API_URL": telegram, "REMNAWAVE_URL": panel,
        "METRICS_PORT": "0", "METRICS_DIR": str(log_dir / "metrics"), "LOG_FORMAT": "json",
    }  # fmt: skip
    log = (log_dir / "worker.log").open("wb")
    argv = [DRAMATIQ, "worker_app", "-Q", "subscriptions", "-p", "1", "-t", "1"]
    proc = subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        _wait(lambda: _consumers(rabbit, vhost, "subscriptions") >= 1, 60, "the worker to consume")
        child = _child_of(proc.pid)

        def send() -> None:
            code = (
                "import worker_app, dramatiq, actors.subscriptions as s; "
                "s.check_expiring_subscriptions.send(); dramatiq.get_broker().close()"
            )
            subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, timeout=60)

        yield child, send
    finally:
        stop_group(proc)
        log.close()
        rabbit.delete_vhost(vhost)


class Sampler:
    """Samples a process's RSS every 20 ms on a thread; :meth:`stop` returns the peak in MB."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak = pid, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss_mb(self.pid))

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return max(self.peak, rss_mb(self.pid))


def peak_rss_mb(pid: int, seconds: float) -> float:
    sampler = Sampler(pid)
    time.sleep(seconds)
    return sampler.stop()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise BenchError(f"no VmRSS for pid {pid}")


def _child_of(pid: int) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.1)
    raise BenchError("the worker process has no child")


def _done_line(path: Path) -> dict[str, object]:
    for line in path.read_text().splitlines():
        if "subscriptions job done" in line:
            return dict(json.loads(line))
    raise BenchError("no 'subscriptions job done' line")


if __name__ == "__main__":
    sys.exit(main())
