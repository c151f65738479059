"""What the payments domain costs: the webhook receiver's throughput, and the poller's API calls.

    .venv/bin/python -m bench.payments [--webhooks 500] [--threads 4] [--pending 10000]

**Receiver.** A real ``worker-app serve`` (fresh ``cybervpn_bench`` database, a private vhost) gets
``--webhooks`` genuine ``invoice_paid`` webhooks — each a different invoice of an existing pending
payment, signed as Crypto Pay signs them — from ``--threads`` client threads. Each goes the whole
way: size and type checks, the signature on the raw bytes, parsing, the ``webhook_logs`` row, the
advisory lock and dedup query, the enqueue of ``process_payment_completion`` on RabbitMQ, the row
marked. Baseline, measured in the same run against the same server with the same threads:
``GET /healthz`` (the HTTP server and Flask alone). Printed: requests/s of both and their ratio.

**Poller.** ``--pending`` pending payments, each with an active invoice in the sandbox Crypto Pay
(``python -m sandbox``): one ``verify_pending_payments`` run (in this process, on the product's
code). Printed: ``getInvoices`` calls (target ≤ 10 + ⌈pending / 1000⌉) and the run's wall time.

Exits 0 whatever the targets say; 1 when a run could not be carried out.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests
import sqlalchemy as sa

from bench.monitoring import WORKER_APP, _starter, _up
from bench.notifications import DB_URL, REDIS_URL, ROOT, BenchError, _free_port, _wait, prepare
from bench.rabbit import Rabbit
from bench.subscriptions import sandbox

TOKEN = "sandbox-cryptobot-token"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.payments", description=__doc__)
    parser.add_argument("--webhooks", type=int, default=500)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--pending", type=int, default=10_000)
    args = parser.parse_args(argv)
    rabbit = Rabbit("amqp://guest:guest@127.0.0.1:5672", "http://127.0.0.1:15672")
    try:
        with tempfile.TemporaryDirectory(prefix="bench-payments-") as tmp, ExitStack() as stack:
            telegram, panel = stack.enter_context(sandbox(Path(tmp)))
            prepare(telegram)
            print(receiver(args.webhooks, args.threads, rabbit, Path(tmp), stack), flush=True)
            print(poller(args.pending, Path(tmp) / "sandbox.log", panel), flush=True)
    except BenchError as e:
        print(f"bench.payments: {e}", file=sys.stderr)
        return 1
    return 0


def receiver(count: int, threads: int, rabbit: Rabbit, log_dir: Path, stack: ExitStack) -> str:
    engine = sa.create_engine(DB_URL)
    payments = [uuid.uuid4() for _ in range(count)]
    with engine.begin() as conn:
        insert = ("INSERT INTO payments (id, user_id, amount, currency, subscription_days) "
                  "SELECT unnest(CAST(:ids AS uuid[])), 1, 5, 'USDT', 30")  # fmt: skip
        conn.execute(sa.text(insert), {"ids": payments})
    vhost = f"bench-payments-{uuid.uuid4().hex[:8]}"
    rabbit.create_vhost(vhost)
    stack.callback(rabbit.delete_vhost, vhost)
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DATABASE_URL": DB_URL, "REDIS_URL": REDIS_URL,
           "RABBITMQ_URL": rabbit.url(vhost), "CRYPTOBOT_TOKEN": TOKEN, "LOG_LEVEL": "WARNING",
           "METRICS_DIR": str(log_dir / "metrics")}  # fmt: skip
    _starter(stack, env, log_dir)("serve", [WORKER_APP, "serve", "--port", str(port)])
    base = f"http://127.0.0.1:{port}"
    _wait(lambda: _up(f"{base}/healthz"), 30, "worker-app serve to answer")
    bodies = [_signed(n + 1, payment_id) for n, payment_id in enumerate(payments)]
    health_rps = _rate(lambda _n, s: s.get(f"{base}/healthz", timeout=10), count, threads)
    statuses: list[int] = []
    latencies: list[float] = []
    webhook_rps = _rate(
        lambda n, s: statuses.append(s.post(f"{base}/webhooks/cryptobot", data=bodies[n][0], timeout=10,
                                             headers={"Content-Type": "application/json",
                                                      "crypto-pay-api-signature": bodies[n][1]}).status_code),
        count, threads, latencies,
    )  # fmt: skip
    with engine.connect() as conn:
        enqueued = conn.execute(sa.text("SELECT count(*) FROM webhook_logs WHERE attempts = 1")).scalar_one()
    ok = statuses.count(200)
    return (
        f"webhook receiver, {threads} client threads: {webhook_rps:,.0f} webhooks/s ({ok} of {count} "
        f"answered 200, {enqueued} enqueued) vs {health_rps:,.0f} GET /healthz per s on the same server: "
        f"ratio {webhook_rps / health_rps:.2f}; webhook {_percentiles(latencies)}"
    )


def _signed(invoice_id: int, payment_id: uuid.UUID) -> tuple[bytes, str]:
    import hashlib
    import hmac

    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    invoice = {"invoice_id": invoice_id, "hash": f"IV{invoice_id}", "status": "paid",
               "currency_type": "crypto", "asset": "USDT", "amount": "5", "paid_asset": "USDT",
               "paid_amount": "5", "paid_at": now,
               "created_at": now, "bot_invoice_url": "https://t.me/CryptoBot", "mini_app_invoice_url": "",
               "web_app_invoice_url": "", "allow_comments": True, "allow_anonymous": True,
               "payload": str(payment_id)}  # fmt: skip
    body = json.dumps({"update_id": invoice_id, "update_type": "invoice_paid", "request_date": now,
                       "payload": invoice}, separators=(",", ":")).encode()  # fmt: skip
    key = hashlib.sha256(TOKEN.encode()).digest()
    return body, hmac.new(key, body, hashlib.sha256).hexdigest()


def _rate(call: Any, count: int, threads: int, latencies: list[float] | None = None) -> float:
    """Requests per second of ``call(n, session)`` for n in range(count), on ``threads`` threads;
    each call's seconds appended to ``latencies``."""
    local = threading.local()

    def one(n: int) -> None:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        began = time.perf_counter()
        call(n, local.session)
        if latencies is not None:
            latencies.append(time.perf_counter() - began)

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, range(count)))
    return count / (time.perf_counter() - started)


def _percentiles(latencies: list[float]) -> str:
    ordered = sorted(latencies)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return f"latency p50 {at(0.5):.1f} ms, p99 {at(0.99):.1f} ms, max {ordered[-1] * 1000:.1f} ms"


def poller(pending: int, sandbox_log: Path, panel: str) -> str:
    from actors.payments.verify import verify
    from worker_app.clients.cryptobot import CryptoPayClient
    from worker_app.config import load_settings
    from worker_app.runtime import Runtime

    cryptopay_url = _cryptopay_url(sandbox_log)
    spec = {"count": pending, "invoice": {"asset": "USDT", "amount": "5"}}
    created = requests.post(f"{cryptopay_url}/_sandbox/invoices", json=spec, timeout=300).json()
    ids = [str(i) for i in range(created["first_id"], created["last_id"] + 1)]
    engine = sa.create_engine(DB_URL)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM webhook_logs"))
        conn.execute(sa.text("DELETE FROM payments"))
        insert = ("INSERT INTO payments (user_id, amount, currency, subscription_days, external_id) "
                  "SELECT 1, 5, 'USDT', 30, unnest(CAST(:ids AS text[]))")  # fmt: skip
        conn.execute(sa.text(insert), {"ids": ids})
    runtime = Runtime(load_settings({**os.environ, "DATABASE_URL": DB_URL, "REDIS_URL": REDIS_URL,
                                     "REMNAWAVE_URL": panel}))  # fmt: skip
    client = CryptoPayClient(cryptopay_url, TOKEN)
    before = len(requests.get(f"{cryptopay_url}/_sandbox/calls", timeout=60).json())
    started = time.perf_counter()
    report = verify(runtime.database, client, runtime.remnawave, runtime.alerts, now=datetime.now(UTC),
                    max_age=timedelta(hours=24))  # fmt: skip
    wall_s = time.perf_counter() - started
    calls = [c for c in requests.get(f"{cryptopay_url}/_sandbox/calls", timeout=60).json()[before:]
             if c.get("method") == "getInvoices"]  # fmt: skip
    target = 10 + math.ceil(pending / 1000)
    return (
        f"poller, {pending:,} pending payments: {len(calls)} getInvoices calls (target ≤ {target}: "
        f"{'met' if len(calls) <= target else 'MISSED'}), {wall_s:.1f} s, found {report.counts}"
    )


def _cryptopay_url(sandbox_log: Path) -> str:
    """The sandbox's Crypto Pay URL, from the line it printed (it was given port 0)."""
    for line in sandbox_log.read_text().splitlines():
        if line.startswith("Crypto Pay sandbox on "):
            return line.split()[4]
    raise BenchError("the sandbox did not print its Crypto Pay URL")


if __name__ == "__main__":
    raise SystemExit(main())
