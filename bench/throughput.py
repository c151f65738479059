"""No-op message throughput through RabbitMQ: our worker vs bare Dramatiq vs Celery, in one run.

    .venv/bin/python -m bench.throughput [--messages 20000] [--rounds 1] [--processes 2 --threads 8]
        [--queue-type classic|quorum|both] [--cluster URLS --cluster-management-url URL]

Each contender gets a fresh vhost, N messages pre-loaded with its own producer (publisher
confirms), then its workers are started and timed from the first to the N-th completion (counted
in Redis by the no-op body, identically for all). See bench/README.md for the method and fairness
choices. Exits 0 whatever the targets say; non-zero only when a run could not be carried out.

``--queue-type quorum`` runs ours and bare Dramatiq on quorum queues on a three-node cluster
(``--cluster``, or one started for the run and removed after it); ``both`` runs them on classic
queues on the single node too and prints classic and quorum side by side. Celery runs on classic
queues only.
"""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import AbstractContextManager, nullcontext

from bench import report
from bench.cli import add_common, check_common, run_all, setup
from bench.cluster import amqp_bases, cluster_rabbit
from bench.contenders import Contender, Options, QueueType, build
from bench.rabbit import Rabbit
from bench.runner import BenchError, RunResult


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
    p.add_argument(
        "--queue-type", choices=["classic", "quorum", "both"], default="classic",
        help="'classic' (default): the single node, as always; 'quorum': ours and bare Dramatiq on "
        "quorum queues on a three-node cluster (no Celery); 'both': each on classic and on quorum, "
        "side by side",
    )  # fmt: skip
    p.add_argument(
        "--cluster", metavar="URLS",
        help="the cluster for quorum runs: each node's AMQP URL without vhost, comma-separated, node 1 "
        "first (default: start a three-node cluster on free ports for the run, removed after it)",
    )  # fmt: skip
    p.add_argument(
        "--cluster-management-url", metavar="URL",
        help="the management API of a node of --cluster (required with --cluster)",
    )  # fmt: skip
    args = p.parse_args(argv)
    check_common(p, args)
    if args.cluster is not None:
        if args.queue_type == "classic":
            p.error("--cluster is for --queue-type quorum or both")
        if not args.cluster_management_url:
            p.error("--cluster needs --cluster-management-url")
        try:
            amqp_bases(args.cluster)
        except ValueError as e:
            p.error(f"--cluster: {e}")
    return args


def _contenders(args: argparse.Namespace) -> tuple[list[Contender], list[Contender]]:
    """The classic and the quorum contenders the command line asks for. With ``both`` and no
    ``--only``, Celery (classic only) is left out: the comparison is per contender."""
    types: tuple[QueueType, ...] = ("classic", "quorum") if args.queue_type == "both" else (args.queue_type,)
    found = {
        queue_type: build(
            Options(
                processes=args.processes,
                threads=args.threads,
                celery_concurrency=tuple(args.celery_concurrency),
                celery_prefetch=tuple(args.celery_prefetch),
                ours_queues=args.ours_queues,
                queue_type=queue_type,
            )
        )
        for queue_type in types
    }
    classic, quorum = found.get("classic", []), found.get("quorum", [])
    if args.only:
        classic = [c for c in classic if c.key in args.only]
        quorum = [c for c in quorum if c.key in args.only]
        if not classic and not quorum:
            known = dict.fromkeys(c.key for c in (*found.get("classic", []), *found.get("quorum", [])))
            raise SystemExit(f"--only matched none of: {', '.join(known)}")
    elif args.queue_type == "both":
        classic = [c for c in classic if c.role != "celery"]
    return classic, quorum


def _cluster(args: argparse.Namespace, needed: bool) -> AbstractContextManager[Rabbit | None]:
    """The cluster for the quorum runs (None when there are none)."""
    return cluster_rabbit(args.cluster, args.cluster_management_url) if needed else nullcontext(None)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config, rabbit = setup(args)
    classic, quorum = _contenders(args)
    started = time.monotonic()
    try:
        with _cluster(args, bool(quorum)) as cluster:
            results = run_all([*classic, *quorum], config, rabbit, args.rounds, cluster=cluster)
    except BenchError as e:
        print(f"\n{e}", file=sys.stderr)
        return 1
    _print(args, classic, quorum, results)
    print(f"\nworker and loader output: {config.log_dir}  (total {time.monotonic() - started:.0f}s)")
    return 1 if any(r.status == "error" for r in results) else 0


def _print(
    args: argparse.Namespace, classic: list[Contender], quorum: list[Contender], results: list[RunResult]
) -> None:
    by_type = {
        "classic": report.summarize(classic, results, args.messages),
        "quorum": report.summarize(quorum, results, args.messages),
    }
    where = {
        "classic": "classic queues, single node",
        "quorum": "quorum queues, "
        + ("--cluster" if args.cluster else "a three-node cluster started for the run"),
    }
    for queue_type, summaries in by_type.items():
        if not summaries:
            continue
        heading = "No-op throughput through RabbitMQ"
        if args.queue_type != "classic":
            heading += f" ({where[queue_type]})"
        print(
            f"\n{heading}: {args.messages} messages, median of {args.rounds} round(s); "
            "seconds = first -> N-th completion"
        )
        print(report.table(summaries))
        print()
        if queue_type == "classic":
            # today's lines in classic mode; with 'both' Celery runs only when --only names it
            with_celery = args.queue_type == "classic" or any(s.contender.role == "celery" for s in summaries)
            print(report.ratios(summaries, vs_celery=with_celery))
        else:
            print(report.ratios(summaries, vs_celery=False))
            print("(Celery is not run on quorum queues; mq-cpu sums the cluster's three nodes)")
    if by_type["classic"] and by_type["quorum"]:
        print("\nClassic (single node) vs quorum (three-node cluster), msg/s:")
        print(report.side_by_side(by_type["classic"], by_type["quorum"]))


if __name__ == "__main__":
    sys.exit(main())
