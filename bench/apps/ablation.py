"""Ours with some of the product's middleware removed, to attribute the stack's cost:
``BENCH_DROP=EventLog,Metrics dramatiq worker_app bench.apps.ablation``. The middleware list of
the broker that ``import worker_app`` built is filtered in place, before the worker boots (a
dropped ``Metrics`` also drops its exposition fork process)."""

from __future__ import annotations

import os

import dramatiq

from bench.ablation import PRODUCT_MIDDLEWARE
from bench.apps.ours import noop, send  # imports worker_app and declares the no-op actor

DROP = frozenset(name for name in os.environ.get("BENCH_DROP", "").split(",") if name)

_broker = dramatiq.get_broker()
_unknown = DROP - {type(m).__name__ for m in _broker.middleware}
if _unknown:
    raise SystemExit(f"BENCH_DROP names unknown middleware: {', '.join(sorted(_unknown))}")
_unlisted = {
    type(m).__name__
    for m in _broker.middleware
    if not type(m).__module__.startswith("dramatiq.") and type(m).__name__ not in PRODUCT_MIDDLEWARE
}
if _unlisted:
    raise SystemExit(f"bench.ablation.PRODUCT_MIDDLEWARE misses {', '.join(sorted(_unlisted))}")
_broker.middleware[:] = [m for m in _broker.middleware if type(m).__name__ not in DROP]

__all__ = ["noop", "send"]
