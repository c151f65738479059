"""The contenders: how each worker is started and which environment it gets.

Every contender runs on a fresh vhost of the same RabbitMQ, with the same no-op body
(:func:`bench.apps.common.record_completion`) and, for the Dramatiq ones, the same process x
thread counts. Celery's prefork pool has no threads, so it runs once per ``--celery-concurrency``
value (by default 2 processes, the same process count, and 16, the same number of concurrent
slots as 2 x 8 threads) and per ``--celery-prefetch`` multiplier (by default 1, the usual advice
with acks_late, and 4, Celery's default); the best Celery figure is the baseline.

With ``queue_type="quorum"`` (on a cluster) the Dramatiq contenders declare quorum queues: ours
through the product's own ``RABBITMQ_QUEUE_TYPE=quorum``, bare Dramatiq through the smallest
change that makes it do so (:class:`bench.apps.bare.QuorumRabbitmqBroker`); Celery is left out.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Literal

Role = Literal["ours", "bare", "celery"]
QueueType = Literal["classic", "quorum"]


@dataclass(frozen=True)
class Options:
    """What the command line chose."""

    processes: int = 2
    threads: int = 8
    celery_concurrency: tuple[int, ...] = (2, 16)
    celery_prefetch: tuple[int, ...] = (1, 4)
    ours_queues: Literal["all", "bench"] = "all"
    queue_type: QueueType = "classic"


@dataclass(frozen=True)
class Contender:
    """One way of running the no-op workload."""

    key: str
    label: str
    role: Role
    app: str  # the loader's app name (bench.load)
    argv: tuple[str, ...]
    shape: str  # processes x threads, for the table
    env: dict[str, str] = field(default_factory=dict)
    queue_type: QueueType = "classic"

    @property
    def tag(self) -> str:
        """The key, with the queue type when it is not classic (progress lines, vhost names)."""
        return self.key if self.queue_type == "classic" else f"{self.key}-{self.queue_type}"


def _dramatiq(opts: Options, *modules: str) -> tuple[str, ...]:
    return (sys.executable, "-m", "dramatiq", "-p", str(opts.processes), "-t", str(opts.threads), *modules)


def _ours(opts: Options, key: str, level: str) -> Contender:
    queues = ("--queues", "bench") if opts.ours_queues == "bench" else ()
    return Contender(
        key=key,
        label=f"ours (LOG_LEVEL={level}, json)",
        role="ours",
        app="ours",
        argv=(*_dramatiq(opts, "worker_app", "bench.apps.ours"), *queues),
        shape=f"{opts.processes}px{opts.threads}t",
        env={
            "LOG_LEVEL": level,
            "LOG_FORMAT": "json",
            "METRICS_PORT": "0",
            "RABBITMQ_QUEUE_TYPE": opts.queue_type,
        },
        queue_type=opts.queue_type,
    )


def _celery(concurrency: int, prefetch: int) -> Contender:
    argv = (
        sys.executable, "-m", "celery", "-A", "bench.apps.celery_app", "worker",
        "-P", "prefork", "-c", str(concurrency), "-Q", "bench", "-l", "WARNING",
        "--without-gossip", "--without-mingle", "--without-heartbeat",
    )  # fmt: skip
    return Contender(
        key=f"celery-c{concurrency}-p{prefetch}",
        label=f"Celery prefork -c {concurrency}, prefetch x{prefetch}",
        role="celery",
        app="celery",
        argv=argv,
        shape=f"{concurrency}px1t",
        env={"BENCH_CELERY_PREFETCH": str(prefetch)},
    )


def build(opts: Options) -> list[Contender]:
    """Every contender of ``opts.queue_type``, in the order they run within a round (no Celery on
    quorum queues)."""
    bare = Contender(
        key="bare",
        label="bare Dramatiq (default middleware)",
        role="bare",
        app="bare",
        argv=_dramatiq(opts, "bench.apps.bare"),
        shape=f"{opts.processes}px{opts.threads}t",
        env={"BENCH_QUEUE_TYPE": opts.queue_type},
        queue_type=opts.queue_type,
    )
    celery = [_celery(c, p) for c in opts.celery_concurrency for p in opts.celery_prefetch]
    return [
        _ours(opts, "ours-info", "INFO"),
        _ours(opts, "ours-warning", "WARNING"),
        bare,
        *(celery if opts.queue_type == "classic" else []),
    ]
