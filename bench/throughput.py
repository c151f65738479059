"""No-op message throughput through RabbitMQ: our worker vs bare Dramatiq vs Celery, in one run.

    .venv/bin/python -m bench.throughput [--messages 20000] [--rounds 1] [--processes 2 --threads 8]

Each contender gets a fresh vhost, N messages pre-loaded with its own producer (publisher
confirms), then its workers are started and timed from the first to the N-th completion (counted
in Redis by the no-op body, identically for all). See bench/README.md for the method and fairness
choices. Exits 0 whatever the targets say; non-zero only when a run could not be carried out.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

from bench import report
from bench.contenders import Contender, Options, build
from bench.rabbit import Rabbit
from bench.runner import BenchError, Config, RunResult, run_once


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.throughput", description=__doc__.split("\n")[0])
    p.add_argument("--messages", type=int, default=20_000, help="messages per run (default 20000)")
    p.add_argument("--rounds", type=int, default=1, help="runs per contender; the median is reported")
    p.add_argument("--processes", type=int, default=2, help="Dramatiq worker processes (default 2)")
    p.add_argument("--threads", type=int, default=8, help="Dramatiq threads per process (default 8)")
    p.add_argument(
        "--celery-concurrency",
        type=int,
        nargs="+",
        default=[2, 16],
        help="Celery prefork pool sizes to run, each a contender (default: 2 16)",
    )
    p.add_argument(
        "--celery-prefetch",
        type=int,
        default=4,
        help="Celery worker_prefetch_multiplier (default 4, Celery's default)",
    )
    p.add_argument(
        "--ours-queues",
        choices=["all", "bench"],
        default="all",
        help="'all': ours consumes every product queue, as `dramatiq worker_app` does "
        "(default); 'bench': only the bench queue, like the other contenders",
    )
    p.add_argument("--only", nargs="+", metavar="KEY", help="run only these contenders (by key)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per run before giving up")
    p.add_argument("--rabbitmq", default="amqp://guest:guest@127.0.0.1:5672", help="AMQP URL without vhost")
    p.add_argument("--management-url", default="http://127.0.0.1:15672")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    p.add_argument("--log-dir", type=Path, help="where worker/loader output goes (default: a new temp dir)")
    args = p.parse_args(argv)
    if args.messages < 2 or args.rounds < 1 or args.processes < 1 or args.threads < 1:
        p.error("--messages must be ≥ 2; --rounds, --processes and --threads ≥ 1")
    return args


def _raise_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the runners' finally blocks


def _selected(args: argparse.Namespace) -> list[Contender]:
    opts = Options(
        processes=args.processes,
        threads=args.threads,
        celery_concurrency=tuple(args.celery_concurrency),
        celery_prefetch=args.celery_prefetch,
        ours_queues=args.ours_queues,
    )
    contenders = build(opts)
    if args.only:
        contenders = [c for c in contenders if c.key in args.only]
        if not contenders:
            raise SystemExit(f"--only matched none of: {', '.join(c.key for c in build(opts))}")
    return contenders


def _run_all(contenders: list[Contender], config: Config, rabbit: Rabbit, rounds: int) -> list[RunResult]:
    results: list[RunResult] = []
    for round_no in range(1, rounds + 1):
        for contender in contenders:
            print(f"[round {round_no}/{rounds}] {contender.key}: ", end="", file=sys.stderr, flush=True)
            try:
                result = run_once(contender, config, rabbit, round_no)
            except BenchError as e:
                result = RunResult(contender, "error", detail=str(e))
            results.append(result)
            print(_progress(result, config.messages), file=sys.stderr, flush=True)
    return results


def _progress(result: RunResult, messages: int) -> str:
    if result.status != "ok":
        return f"{result.status.upper()}: {result.detail}"
    return (
        f"loaded in {result.load_s:.1f}s; {messages} done in {result.seconds:.2f}s "
        f"({result.rate(messages):,.0f} msg/s, first completion {result.startup_s:.2f}s after start)"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="bench-throughput-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    config = Config(messages=args.messages, timeout_s=args.timeout, redis_url=args.redis_url, log_dir=log_dir)
    rabbit = Rabbit(args.rabbitmq, args.management_url)
    contenders = _selected(args)
    started = time.monotonic()
    results = _run_all(contenders, config, rabbit, args.rounds)
    summaries = report.summarize(contenders, results, args.messages)
    print()
    print(
        f"No-op throughput through RabbitMQ, {args.messages} messages, {args.rounds} round(s), "
        f"median; seconds = first → N-th completion; msg/s = (N-1)/seconds"
    )
    print(report.table(summaries))
    print()
    print(report.ratios(summaries))
    print(f"\nworker and loader output: {log_dir}  (total {time.monotonic() - started:.0f}s)")
    return 1 if any(r.status == "error" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
