"""Command-line pieces shared by ``bench.throughput`` and ``bench.ablation``."""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
from pathlib import Path
from types import FrameType

from bench.contenders import Contender
from bench.rabbit import Rabbit
from bench.runner import BenchError, Config, RunResult, run_once


def add_common(p: argparse.ArgumentParser) -> None:
    """Options every benchmark takes."""
    p.add_argument("--messages", type=int, default=20_000, help="messages per run (default 20000)")
    p.add_argument("--rounds", type=int, default=1, help="runs per contender; the median is reported")
    p.add_argument("--processes", type=int, default=2, help="Dramatiq worker processes (default 2)")
    p.add_argument("--threads", type=int, default=8, help="Dramatiq threads per process (default 8)")
    p.add_argument("--only", nargs="+", metavar="KEY", help="run only these contenders (by key)")
    p.add_argument(
        "--timeout", type=float, default=300.0, help="seconds per run before giving up (default 300)"
    )
    p.add_argument("--rabbitmq", default="amqp://guest:guest@127.0.0.1:5672", help="AMQP URL without vhost")
    p.add_argument("--management-url", default="http://127.0.0.1:15672")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/14", help="for the completion counter")
    p.add_argument("--log-dir", type=Path, help="where worker/loader output goes (default: a new temp dir)")


def check_common(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.messages < 2 or args.rounds < 1 or args.processes < 1 or args.threads < 1:
        p.error("--messages must be >= 2; --rounds, --processes and --threads >= 1")


def select(contenders: list[Contender], only: list[str] | None) -> list[Contender]:
    """The contenders named by ``--only`` (all without it)."""
    if not only:
        return contenders
    chosen = [c for c in contenders if c.key in only]
    if not chosen:
        raise SystemExit(f"--only matched none of: {', '.join(c.key for c in contenders)}")
    return chosen


def setup(args: argparse.Namespace) -> tuple[Config, Rabbit]:
    """Make SIGTERM unwind cleanly (stopping workers, deleting vhosts); build the run config."""
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="bench-throughput-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    config = Config(messages=args.messages, timeout_s=args.timeout, redis_url=args.redis_url, log_dir=log_dir)
    return config, Rabbit(args.rabbitmq, args.management_url)


def _raise_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the runners' finally blocks


def run_all(
    contenders: list[Contender], config: Config, rabbit: Rabbit, rounds: int, *, cluster: Rabbit | None = None
) -> list[RunResult]:
    """Every contender once per round (interleaved), with one progress line each on stderr.
    Classic contenders run on ``rabbit``, quorum ones on ``cluster``."""
    if cluster is None and any(c.queue_type != "classic" for c in contenders):
        raise ValueError("quorum contenders need a cluster")
    results: list[RunResult] = []
    for round_no in range(1, rounds + 1):
        for contender in contenders:
            print(f"[round {round_no}/{rounds}] {contender.tag}: ", end="", file=sys.stderr, flush=True)
            server = rabbit if contender.queue_type == "classic" or cluster is None else cluster
            try:
                result = run_once(contender, config, server, round_no)
            except BenchError as e:
                result = RunResult(contender, "error", detail=str(e))
            results.append(result)
            print(_progress(result, config.messages), file=sys.stderr, flush=True)
    return results


def _progress(result: RunResult, messages: int) -> str:
    if result.status != "ok":
        return f"{result.status.upper()}: {result.detail}"
    queue = f"; {result.queue}" if result.queue else ""
    return (
        f"loaded in {result.load_s:.1f}s; {messages} done in {result.seconds:.2f}s "
        f"({result.rate(messages):,.0f} msg/s, first completion {result.startup_s:.2f}s after start{queue})"
    )
