"""In-process cost of each middleware per message, without RabbitMQ: the hooks a worker thread
and a consumer thread call for every message (``before/after_process_message``,
``before/after_ack``), run in Dramatiq's order over the product's stack and over Dramatiq's
default stack, each call timed.

    .venv/bin/python -m bench.middleware_cost [--messages 20000]

Log lines of EventLog go to /dev/null (cheaper than the worker's pipe to the ``dramatiq`` main
process, which then writes them out: that part shows only in the end-to-end benchmark). Needs no
service: nothing is published, no message is redelivered (so RedeliveryLimit makes no Redis call)
and the no-op actor has no database session.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from collections import defaultdict
from typing import Any

HOOKS_BEFORE = ("before_process_message",)
HOOKS_AFTER = ("after_process_message",)


def _prepare_environment(metrics_dir: str) -> None:
    """Settings for ``import worker_app``: INFO json logs into /dev/null, metrics in a temp dir."""
    os.environ.update(
        LOG_LEVEL="INFO",
        LOG_FORMAT="json",
        METRICS_PORT="0",
        METRICS_DIR=metrics_dir,
        REDIS_URL=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14"),
        BENCH_RABBITMQ_URL="amqp://guest:guest@127.0.0.1:5672/%2F",
    )
    logging.getLogger().addHandler(logging.StreamHandler(open(os.devnull, "w")))  # noqa: SIM115


def _messages(broker: Any, actor: Any, count: int, proxy: type[Any]) -> list[Any]:
    """``count`` proxies of messages that went through the producer's enqueue middleware, as the
    consumer hands them to the worker (ours: :class:`worker_app.broker.Delivery`)."""
    proxies = []
    for tag in range(count):
        message = actor.message()
        broker.emit_before("enqueue", message, None)
        proxies.append(proxy(False, tag, message))
    return proxies


def _run(broker: Any, middleware: list[Any], proxies: list[Any]) -> dict[str, float]:
    """ns per message spent in each middleware's per-message hooks, in Dramatiq's call order."""
    spent: dict[str, int] = defaultdict(int)
    clock = time.perf_counter_ns
    for proxy in proxies:
        for m in middleware:
            t = clock()
            m.before_process_message(broker, proxy)
            spent[type(m).__name__] += clock() - t
        for m in reversed(middleware):
            t = clock()
            m.after_process_message(broker, proxy, result=None)
            spent[type(m).__name__] += clock() - t
        for m in middleware:
            t = clock()
            m.before_ack(broker, proxy)
            m.after_ack(broker, proxy)
            spent[type(m).__name__] += clock() - t
    return {name: ns / len(proxies) for name, ns in spent.items()}


def _column(broker: Any, middleware: list[Any], actor: Any, count: int, proxy: type[Any]) -> dict[str, float]:
    _run(broker, middleware, _messages(broker, actor, min(count, 2000), proxy))  # warm-up
    return _run(broker, middleware, _messages(broker, actor, count, proxy))


def _table(columns: dict[str, dict[str, float]], control: float) -> str:
    names = list(dict.fromkeys(name for col in columns.values() for name in col))
    header = f"{'middleware (µs per message)':<28}" + "".join(f"{title:>16}" for title in columns)
    lines = [header, "-" * len(header)]
    for name in names:
        cells = "".join(
            f"{max(col[name] - control, 0) / 1000:>16.1f}" if name in col else f"{'':>16}"
            for col in columns.values()
        )
        lines.append(f"{name:<28}{cells}")
    totals = "".join(
        f"{sum(max(v - control, 0) for v in col.values()) / 1000:>16.1f}" for col in columns.values()
    )
    lines += ["-" * len(header), f"{'total':<28}{totals}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.middleware_cost", description=(__doc__ or "").split("\n")[0]
    )
    p.add_argument("--messages", type=int, default=20_000)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-metrics-") as metrics_dir:
        _prepare_environment(metrics_dir)
        import dramatiq
        from dramatiq.brokers.rabbitmq import _RabbitmqMessage
        from dramatiq.middleware import default_middleware

        from bench.apps.ours import noop
        from worker_app.broker import Delivery

        broker = dramatiq.get_broker()
        broker.emit_after("process_boot")
        ours = list(broker.middleware)
        bare = [m() for m in default_middleware]
        for m in bare:
            m.after_process_boot(broker)
        control = _column(broker, [dramatiq.Middleware()], noop, args.messages, Delivery)["Middleware"]
        columns = {"ours, INFO": _column(broker, ours, noop, args.messages, Delivery)}
        logging.getLogger().setLevel(logging.WARNING)  # what LOG_LEVEL=WARNING does for EventLog
        columns["ours, WARNING"] = _column(broker, ours, noop, args.messages, Delivery)
        columns["bare defaults"] = _column(broker, bare, noop, args.messages, _RabbitmqMessage)
    print(f"{args.messages} messages; timer overhead ({control / 1000:.2f} µs per middleware) subtracted")
    print(_table(columns, control))
    return 0


if __name__ == "__main__":
    sys.exit(main())
