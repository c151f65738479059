"""No-op message throughput through RabbitMQ: our worker vs bare Dramatiq vs Celery, in one run.

    .venv/bin/python -m bench.throughput [--messages 20000] [--rounds 1] [--processes 2 --threads 8]

Each contender gets a fresh vhost, N messages pre-loaded with its own producer (publisher
confirms), then its workers are started and timed from the first to the N-th completion (counted
in Redis by the no-op body, identically for all). See bench/README.md for the method and fairness
choices. Exits 0 whatever the targets say; non-zero only when a run could not be carried out.
"""

from __future__ import annotations

import argparse
import sys
import time

from bench import report
from bench.cli import add_common, check_common, run_all, select, setup
from bench.contenders import Options, build


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.throughput", description=(__doc__ or "").split("\n")[0])
    add_common(p)
    p.add_argument(
        "--celery-concurrency", type=int, nargs="+", default=[2, 16],
        help="Celery prefork pool sizes, each a contender (default: 2 16); the best is the baseline",
    )  # fmt: skip
    p.add_argument(
        "--celery-prefetch", type=int, nargs="+", default=[1, 4],
        help="Celery worker_prefetch_multiplier values, each a contender (default: 1 4)",
    )  # fmt: skip
    p.add_argument(
        "--ours-queues", choices=["all", "bench"], default="all",
        help="'all' (default): ours consumes every product queue, as `dramatiq worker_app` does; "
        "'bench': only the bench queue, like the other contenders",
    )  # fmt: skip
    args = p.parse_args(argv)
    check_common(p, args)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config, rabbit = setup(args)
    opts = Options(
        processes=args.processes,
        threads=args.threads,
        celery_concurrency=tuple(args.celery_concurrency),
        celery_prefetch=tuple(args.celery_prefetch),
        ours_queues=args.ours_queues,
    )
    contenders = select(build(opts), args.only)
    started = time.monotonic()
    results = run_all(contenders, config, rabbit, args.rounds)
    summaries = report.summarize(contenders, results, args.messages)
    print(
        f"\nNo-op throughput through RabbitMQ: {args.messages} messages, median of {args.rounds} round(s); "
        "seconds = first -> N-th completion"
    )
    print(report.table(summaries))
    print()
    print(report.ratios(summaries))
    print(f"\nworker and loader output: {config.log_dir}  (total {time.monotonic() - started:.0f}s)")
    return 1 if any(r.status == "error" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
