"""Where our worker's overhead over bare Dramatiq comes from: the no-op benchmark of
:mod:`bench.throughput`, run on our stack with one piece removed at a time.

    .venv/bin/python -m bench.ablation [--rounds 3] [--log-level WARNING]

Variants: the full stack (all product queues consumed, as ``dramatiq worker_app`` does), the same
consuming only the bench queue, then each product middleware dropped in turn (bench queue only),
everything product-specific dropped, and bare Dramatiq for reference. A middleware's cost is
read as the throughput gained by dropping it.
"""

from __future__ import annotations

import argparse
import sys
import time

from bench import report
from bench.cli import add_common, check_common, run_all, select, setup
from bench.contenders import Contender, Options, build

# bench.apps.ablation refuses to run if the product stack has a middleware not listed here
PRODUCT_MIDDLEWARE = (
    "TraceContext", "EventLog", "Metrics", "PolicyRetries", "DeadLetters", "CurrentMessage", "Results",
    "DbSessions", "ScheduledFires", "ReplayClaims", "JobTracking", "WorkerHeartbeats", "StopFlag",
    "RedeliveryLimit", "ArgumentCheck",
)  # fmt: skip


def _variant(
    opts: Options, key: str, label: str, drop: tuple[str, ...], level: str, *, all_queues: bool
) -> Contender:
    queues = () if all_queues else ("--queues", "bench")
    argv = (
        sys.executable, "-m", "dramatiq", "-p", str(opts.processes), "-t", str(opts.threads),
        "worker_app", "bench.apps.ablation", *queues,
    )  # fmt: skip
    return Contender(
        key=key,
        label=label,
        role="ours",
        app="ours",
        argv=argv,
        shape=f"{opts.processes}px{opts.threads}t",
        env={"LOG_LEVEL": level, "LOG_FORMAT": "json", "METRICS_PORT": "0", "BENCH_DROP": ",".join(drop)},
    )


def variants(opts: Options, level: str) -> list[Contender]:
    """The full stack, bench-queue-only, each middleware dropped, all dropped, bare Dramatiq."""
    found = [
        _variant(opts, "full", f"ours, all queues ({level})", (), level, all_queues=True),
        _variant(opts, "bench-queue", "ours, bench queue only", (), level, all_queues=False),
    ]
    found += [
        _variant(opts, f"no-{name}", f"  without {name}", (name,), level, all_queues=False)
        for name in PRODUCT_MIDDLEWARE
    ]
    found.append(
        _variant(
            opts,
            "no-product",
            "  without any product middleware",
            PRODUCT_MIDDLEWARE,
            level,
            all_queues=False,
        )
    )
    found += [c for c in build(opts) if c.role == "bare"]
    return found


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.ablation", description=(__doc__ or "").split("\n")[0])
    add_common(p)
    p.add_argument("--log-level", choices=["INFO", "WARNING"], default="WARNING", help="ours' LOG_LEVEL")
    args = p.parse_args(argv)
    check_common(p, args)
    return args


def deltas(summaries: list[report.Summary]) -> str:
    """Each variant's throughput relative to "bench queue only" (what dropping a piece gains)."""
    base = next((s for s in summaries if s.contender.key == "bench-queue" and s.rate), None)
    if base is None or base.rate is None:
        return "(no completed 'bench-queue' run to compare with)"
    lines = ["msg/s relative to 'ours, bench queue only' (> 1.00: that piece costs throughput):"]
    for s in summaries:
        rel = f"{s.rate / base.rate:5.2f}" if s.rate else "    -"
        lines.append(f"  {s.contender.label:<42} {rel}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config, rabbit = setup(args)
    opts = Options(processes=args.processes, threads=args.threads)
    contenders = select(variants(opts, args.log_level), args.only)
    started = time.monotonic()
    results = run_all(contenders, config, rabbit, args.rounds)
    summaries = report.summarize(contenders, results, args.messages)
    print(f"\nAblation: {args.messages} messages, median of {args.rounds} round(s)")
    print(report.table(summaries))
    print()
    print(deltas(summaries))
    print(f"\nworker and loader output: {config.log_dir}  (total {time.monotonic() - started:.0f}s)")
    return 1 if any(r.status == "error" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
