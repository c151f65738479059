"""An alert storm while Telegram is down must not slow the worker down, and nothing may be lost.

    .venv/bin/python -m bench.alert_storm [--good 20000] [--bad 5000] [--rounds 2]
        [--processes 2 --threads 8]

Each run: a fresh `dramatiq -p 2 -t 8 worker_app bench.apps.alerting -Q bench bench_storm` (product
middleware and defaults: JSON logs at INFO, ADMIN_TELEGRAM_IDS set, the sandbox as Telegram), a
private vhost, a fresh database (`cybervpn_bench`, for the dead letters), Redis db 14. `--good` no-op
messages and `--bad` buggy ones (a KeyError each: a first-occurrence alert and, with 0 retries, a dead
letter whose action is an alert) are pre-loaded interleaved; the measure is the no-op messages'
throughput, first to N-th completion. Scenarios, alternated per round (median of the rounds):

* quiet — the no-op messages alone, Telegram up: the baseline;
* storm, Telegram up — with the storm;
* storm, Telegram down — with the storm, the sandbox closing every Bot API connection. Then Telegram
  comes back and the run waits for the alerts kept meanwhile to go out.

Target: storm with Telegram down ≥ 0.90 × storm with Telegram up, the two run back to back in each
round and the median of the rounds' ratios taken (what Telegram being down costs),
and the alerts delivered once it is back: 2 (one per fingerprint: the bug, its dead letters). Also
printed: both storms against the quiet baseline (what the storm itself costs: a dead letter written
per message). Exits 0 whatever the targets say; 1 when a run could not be carried out.
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

from bench.notifications import (
    _ENGINE,
    DB_URL,
    REDIS_URL,
    ROOT,
    TOKEN,
    BenchError,
    _wait,
    prepare,
    sandbox_process,
)
from bench.rabbit import Rabbit
from bench.runner import stop_group

DRAMATIQ = str(Path(sys.executable).parent / "dramatiq")
ADMIN = 900001
SCENARIOS = ("quiet", "storm-up", "storm-down")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    log_dir = Path(tempfile.mkdtemp(prefix="bench-alert-storm-"))
    rabbit = Rabbit("amqp://guest:guest@127.0.0.1:5672", "http://127.0.0.1:15672")
    rates: dict[str, list[float]] = {name: [] for name in SCENARIOS}
    delivered: list[str] = []
    try:
        with sandbox_process(log_dir) as sandbox:
            for round_no in range(1, args.rounds + 1):
                for name in SCENARIOS:
                    rate, note = run(args, rabbit, sandbox, name, log_dir / f"{name}-{round_no}")
                    rates[name].append(rate)
                    print(f"round {round_no} {name:<11} {rate:8,.0f} msg/s {note}", flush=True)
                    if note:
                        delivered.append(note)
    except BenchError as e:
        print(f"could not run: {e}\nlogs: {log_dir}")
        return 1
    median = {name: statistics.median(values) for name, values in rates.items()}
    pairs = [down / up for down, up in zip(rates["storm-down"], rates["storm-up"], strict=True)]
    down_vs_up = statistics.median(pairs)
    print(
        f"\nNo-op throughput with {args.good} no-op and {args.bad} failing messages, median of {args.rounds}:"
    )
    for name in SCENARIOS:
        print(f"  {name:<11} {median[name]:8,.0f} msg/s  ({median[name] / median['quiet']:.2f} x quiet)")
    print(f"  storm, Telegram down / storm, Telegram up, per round: {', '.join(f'{r:.2f}' for r in pairs)}")
    print(f"  median of the rounds' ratios = {down_vs_up:.2f} "
          f"(target >= 0.90: {'PASS' if down_vs_up >= 0.90 else 'MISS'})")  # fmt: skip
    print(f"logs: {log_dir}")
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.alert_storm", description=(__doc__ or "").split("\n")[0]
    )
    p.add_argument("--good", type=int, default=20_000, help="no-op messages per run (measured)")
    p.add_argument("--bad", type=int, default=5_000, help="failing messages per storm run")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--threads", type=int, default=8)
    return p.parse_args(argv)


def run(
    args: argparse.Namespace, rabbit: Rabbit, sandbox: str, name: str, log_dir: Path
) -> tuple[float, str]:
    """One run of scenario ``name``: the no-op throughput, and (storm-down) what was delivered after."""
    log_dir.mkdir(parents=True)
    prepare(sandbox)
    requests.post(
        f"{sandbox}/_sandbox/faults", json={"down": name == "storm-down"}, timeout=10
    ).raise_for_status()
    vhost = f"bench-alerts-{uuid.uuid4().hex[:8]}"
    rabbit.create_vhost(vhost)
    bench_key = f"bench:alerts:{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ, "PYTHONPATH": str(ROOT), "DATABASE_URL": DB_URL, "REDIS_URL": REDIS_URL,
        "RABBITMQ_URL": rabbit.url(vhost), "TELEGRAM_API_URL": sandbox, "TELEGRAM_BOT_TOKEN": TOKEN,
        "ADMIN_TELEGRAM_IDS": str(ADMIN), "METRICS_PORT": "0", "METRICS_DIR": str(log_dir / "metrics"),
        "LOG_FORMAT": "json", "BENCH_KEY": bench_key, "BENCH_TARGET": str(args.good),
        "BENCH_REDIS_URL": REDIS_URL,
    }  # fmt: skip
    bad = 0 if name == "quiet" else args.bad
    code = f"from bench.apps.alerting import send; send({args.good}, {bad})"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True)
    argv = [DRAMATIQ, "worker_app", "bench.apps.alerting", "-Q", "bench", "bench_storm",
            "-p", str(args.processes), "-t", str(args.threads)]  # fmt: skip
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    with (log_dir / "worker.log").open("wb") as log:
        proc = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        _wait(lambda: client.get(f"{bench_key}:last"), 600, f"{args.good} no-op messages")
        first, last = (
            float(client.get(f"{bench_key}:first") or 0),
            float(client.get(f"{bench_key}:last") or 0),
        )
        rate = (args.good - 1) / (last - first)
        note = ""
        if bad:
            _wait(lambda: _dead_letters() >= bad, 600, f"the {bad} failing messages to be dead letters")
        if name == "storm-down":
            note = _after_telegram_returns(sandbox)
        return rate, note
    finally:
        stop_group(proc)
        rabbit.delete_vhost(vhost)
        client.close()


def _dead_letters() -> int:
    with _ENGINE.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM dead_letters")).scalar_one())


def _after_telegram_returns(sandbox: str) -> str:
    """Bring Telegram back; how many alerts then went out, and how long that took."""

    def admin_messages() -> list[dict[str, object]]:
        received = requests.get(f"{sandbox}/_sandbox/received", params={"chat_id": ADMIN}, timeout=30).json()
        return [e for e in received if e["status"] == 200]

    if admin_messages():
        return "(an alert got through while Telegram was down?!)"
    back = time.monotonic()
    requests.post(f"{sandbox}/_sandbox/faults", json={"down": None}, timeout=10).raise_for_status()
    _wait(lambda: len(admin_messages()) >= 2, 120, "the kept alerts to go out after Telegram came back")
    took = time.monotonic() - back
    time.sleep(5)  # any duplicate would show up now
    sent = admin_messages()
    verdict = "PASS" if len(sent) == 2 else "MISS"
    return f"| Telegram back: {len(sent)} alert(s) delivered in {took:.1f}s (target 2: {verdict})"


if __name__ == "__main__":
    sys.exit(main())
