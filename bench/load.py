"""Pre-loads a contender's queue: ``python -m bench.load {ours,bare,celery} COUNT``.

Run in a process of its own because each contender's app module reads its settings (the vhost's
URL among them) from the environment at import time. Prints the elapsed seconds.
"""

from __future__ import annotations

import argparse
import importlib
import time

APP_MODULES = {"ours": "bench.apps.ours", "bare": "bench.apps.bare", "celery": "bench.apps.celery_app"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("app", choices=sorted(APP_MODULES))
    parser.add_argument("count", type=int)
    args = parser.parse_args()
    module = importlib.import_module(APP_MODULES[args.app])
    started = time.perf_counter()
    module.send(args.count)
    print(f"published {args.count} in {time.perf_counter() - started:.2f}s", flush=True)


if __name__ == "__main__":
    main()
