"""Telegram updates through ``POST /webhooks/telegram`` at a fixed rate (seed 004's trigger: "tens
of thousands of updates per minute"; the target here is 2,000/s, 120,000/min) over many chats, into
two worker processes: webhook latency, end-to-end latency, ordering violations, loss.

    .venv/bin/python -m bench.bot_updates [--rate 2000] [--seconds 30] [--chats 1000]

A real ``worker-app serve`` and ``dramatiq worker_app -Q bot_updates`` (2 processes x 8 threads) on a
fresh vhost; the load is open-loop (update ``i`` is due at ``i / rate`` s, whatever the answers), each
chat's updates sent one after another as Telegram does (the next only once the previous was
answered) over ``--connections`` keep-alive connections (Telegram's ``max_connections``, 40 by
default). The handler (:mod:`bench.apps.bot_handler`) logs ``(update, chat, time)`` to Redis; from
that log: per-chat order (an update run after a later one of its chat), lost and duplicated updates,
and the end-to-end time (webhook request sent → handler ran). The baseline, measured first in the
same run at the same rate and connections, is ``GET /healthz`` on the same server: what the web
server alone costs, so the ratio shows what receiving, checking and publishing an update adds.

Targets: ordering violations 0, lost 0, webhook p99 < 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import redis

from bench.notifications import _free_port
from bench.rabbit import Rabbit
from bench.runner import process_group

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SECRET = "bench-webhook-secret"


@dataclass
class Load:
    """What one load phase saw."""

    sent: int
    seconds: float
    latencies_s: list[float]
    statuses: dict[int, int]
    sent_at: dict[int, float]

    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0

    def quantile(self, q: float) -> float:
        ordered = sorted(self.latencies_s)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.bot_updates", description=(__doc__ or "").split("\n")[0]
    )
    p.add_argument("--rate", type=float, default=2000.0, help="updates per second (default 2000)")
    p.add_argument("--seconds", type=float, default=30.0, help="length of the update load (default 30)")
    p.add_argument("--baseline-seconds", type=float, default=10.0, help="length of the /healthz baseline")
    p.add_argument("--chats", type=int, default=1000, help="distinct chats (default 1000)")
    p.add_argument("--connections", type=int, default=40, help="concurrent connections (Telegram: 40)")
    p.add_argument("--processes", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--threads", type=int, default=8, help="threads per worker process (default 8)")
    p.add_argument("--rabbitmq", default="amqp://guest:guest@127.0.0.1:5672", help="AMQP URL without vhost")
    p.add_argument("--management-url", default="http://127.0.0.1:15672")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    p.add_argument("--drain-timeout", type=float, default=300.0, help="seconds to wait for the workers")
    args = p.parse_args(argv)
    for name in ("rate", "seconds", "chats", "connections"):
        if getattr(args, name) <= 0:
            p.error(f"--{name} must be positive")
    return args


#: Update ids of this run start here: the workers remember handled update ids for a day
#: (BOT_UPDATE_DEDUP_TTL_S), so a rerun reusing 1..N would be skipped as duplicates.
RUN_BASE = int(time.time() * 1000) * 1000


def update(i: int, chats: int) -> dict[str, object]:
    chat = 1_000_000 + i % chats
    return {"update_id": RUN_BASE + i, "message": {"message_id": i, "date": int(time.time()), "text": f"u{i}",
                                        "chat": {"id": chat, "type": "private"}}}  # fmt: skip


@dataclass(frozen=True)
class Shape:
    """The load's shape: requests per second, chats, concurrent connections."""

    rate: float
    chats: int
    connections: int


async def drive(base: str, path: str, count: int, shape: Shape) -> Load:
    """``count`` requests, request ``i`` due at ``i / rate``; a chat's next request waits for the
    answer to its previous one (POST of updates; GET for the baseline)."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    sent_at: dict[int, float] = {}
    rate, chats, connections = shape.rate, shape.chats, shape.connections
    slots = asyncio.Semaphore(connections)
    last: dict[int, asyncio.Future[None]] = {}
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:

        async def one(i: int, previous: asyncio.Future[None] | None, done: asyncio.Future[None]) -> None:
            try:
                if previous is not None:
                    await previous
                async with slots:
                    started = time.perf_counter()
                    sent_at[i] = time.time()
                    if path == "/healthz":
                        answer = await client.get(path)
                    else:
                        answer = await client.post(path, json=update(i, chats), headers=headers)
                    latencies.append(time.perf_counter() - started)
                    statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1
            except httpx.HTTPError as e:
                statuses[-1] = statuses.get(-1, 0) + 1
                print(f"request {i}: {type(e).__name__}: {e}", file=sys.stderr)
            finally:
                done.set_result(None)

        loop = asyncio.get_running_loop()
        tasks = []
        begin = time.perf_counter()
        for i in range(1, count + 1):
            delay = begin + (i - 1) / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            chat = i % chats
            done: asyncio.Future[None] = loop.create_future()
            tasks.append(asyncio.create_task(one(i, last.get(chat), done)))
            last[chat] = done
        await asyncio.gather(*tasks)
        seconds = time.perf_counter() - begin
    return Load(count, seconds, latencies, statuses, sent_at)


def wait_handled(client: redis.Redis, key: str, count: int, timeout_s: float) -> list[tuple[int, str, float]]:
    """The handler's log once it holds ``count`` distinct updates (or at the timeout)."""
    deadline = time.monotonic() + timeout_s
    while True:
        entries = [str(line).split(" ") for line in client.lrange(key, 0, -1)]
        parsed = [(int(a), b, float(c)) for a, b, c in entries]
        if len({u for u, _, _ in parsed}) >= count or time.monotonic() > deadline:
            return parsed
        time.sleep(0.5)


def wait_up(base: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"worker-app serve did not answer {base}/healthz within {timeout_s:.0f} s")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rabbit = Rabbit(args.rabbitmq, args.management_url)
    vhost = f"bench-bot-{uuid.uuid4().hex[:8]}"
    log_key = f"bench:bot:{vhost}"
    logs = Path(tempfile.mkdtemp(prefix="bench-bot-updates-"))
    store = redis.Redis.from_url(args.redis_url, decode_responses=True)
    store.delete(log_key)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        "RABBITMQ_URL": rabbit.url(vhost), "REDIS_URL": args.redis_url, "TELEGRAM_WEBHOOK_SECRET": SECRET,
        "BOT_UPDATE_HANDLER": "bench.apps.bot_handler:record", "BENCH_BOT_LOG_KEY": log_key,
        "LOG_LEVEL": "WARNING", "LOG_FORMAT": "json", "METRICS_PORT": "0", "PYTHONPATH": str(ROOT),
    }  # fmt: skip
    count = int(args.rate * args.seconds)
    rabbit.create_vhost(vhost)
    try:
        workers = [str(BIN / "dramatiq"), "worker_app", "bench.apps.bot_handler", "-Q", "bot_updates",
                   "-p", str(args.processes), "-t", str(args.threads)]  # fmt: skip
        with (
            process_group(tuple(workers), {**os.environ, **env}, logs / "worker.log"),
            process_group(
                (str(BIN / "worker-app"), "serve", "--port", str(port)),
                {**os.environ, **env},
                logs / "serve.log",
            ),  # fmt: skip
        ):
            wait_up(base)
            shape = Shape(args.rate, args.chats, args.connections)
            baseline = asyncio.run(drive(base, "/healthz", int(args.rate * args.baseline_seconds), shape))
            load = asyncio.run(drive(base, "/webhooks/telegram", count, shape))
            drained_from = time.monotonic()
            ran = wait_handled(store, log_key, count, args.drain_timeout)
            drain_s = time.monotonic() - drained_from
    finally:
        rabbit.delete_vhost(vhost)
        store.delete(log_key)
    _print(args, (baseline, load), ran, drain_s, logs)
    return 0


def _print(
    args: argparse.Namespace,
    phases: tuple[Load, Load],
    ran: list[tuple[int, str, float]],
    drain_s: float,
    logs: Path,
) -> None:
    baseline, load = phases
    count = load.sent
    per_chat: dict[str, list[int]] = {}
    first_run: dict[int, float] = {}
    for update_id, chat, at in ran:
        per_chat.setdefault(chat, []).append(update_id)
        first_run.setdefault(update_id - RUN_BASE, at)
    violations = sum(1 for ids in per_chat.values() for a, b in itertools.pairwise(ids) if b < a)
    distinct = set(first_run)
    accepted = load.statuses.get(200, 0)
    e2e = sorted(first_run[u] - load.sent_at[u] for u in distinct if u in load.sent_at)
    p95_e2e = e2e[min(len(e2e) - 1, int(0.95 * len(e2e)))] if e2e else float("nan")
    ms = 1000
    print(f"\nTelegram updates through the webhook: {count} updates over {args.chats} chats, target "
          f"{args.rate:,.0f}/s, {args.connections} connections; "
          f"workers {args.processes}px{args.threads}t")  # fmt: skip
    print(f"{'phase':<22} {'sent':>8} {'rate/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}  statuses")
    for name, phase in (("baseline GET /healthz", baseline), ("POST /webhooks/telegram", load)):
        print(f"{name:<22} {phase.sent:>8} {phase.rate():>8,.0f} {phase.quantile(0.5) * ms:>8.1f} "
              f"{phase.quantile(0.99) * ms:>8.1f} {max(phase.latencies_s, default=0) * ms:>8.1f}  "
              f"{dict(sorted(phase.statuses.items()))}")  # fmt: skip
    print()
    p99 = load.quantile(0.99) * ms
    print(f"webhook p99 / baseline p99        = {p99 / max(baseline.quantile(0.99) * ms, 1e-9):.2f}")
    print(
        f"webhook p99                       = {p99:.1f} ms   target < 50 ms  {'ok' if p99 < 50 else 'MISS'}"
    )
    print(f"end-to-end p95 (sent -> handled)  = {p95_e2e * ms:.1f} ms")
    print(
        f"ordering violations               = {violations}   target 0  {'ok' if violations == 0 else 'MISS'}"
    )
    print(f"lost (accepted, never handled)    = {max(0, accepted - len(distinct))}   target 0")
    print(f"duplicated                        = {len(ran) - len(distinct)}")
    print(f"achieved rate                     = {load.rate():,.0f}/s of {args.rate:,.0f}/s; "
          f"workers done {drain_s:.1f} s after the last answer")  # fmt: skip
    print(f"\nserve and worker logs: {logs}")


if __name__ == "__main__":
    sys.exit(main())
