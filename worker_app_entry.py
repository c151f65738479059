"""The ``worker-app`` console script: ``worker-app health`` answers without importing the app (a
Docker health check runs every 30 s inside the container's memory limit: importing the whole app for
it costs about a second and 100 MB); every other command is :func:`worker_app.cli.main`."""

from __future__ import annotations

import argparse
import os
import sys
import urllib.error
import urllib.request


def main() -> None:
    args = sys.argv[1:]
    if args[:1] == ["health"] and not {"-h", "--help"} & set(args):
        sys.exit(health(args[1:]))
    from worker_app.cli import main as app_main

    app_main()


def health(argv: list[str]) -> int:
    """``worker-app health [--port N] [--ready] [--timeout S]``: GET the process's pod-local
    ``/healthz`` (or ``/readyz``) on 127.0.0.1; print its checks; 0 on 200, 1 otherwise (2: bad usage)."""
    parser = argparse.ArgumentParser(prog="worker-app health", add_help=False)
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--ready", action="store_true")
    parser.add_argument("--timeout", dest="timeout_s", type=float, default=3.0)
    try:
        options = parser.parse_args(argv)
    except SystemExit:
        return 2
    port = options.port or int(os.environ.get("METRICS_PORT") or 9090)
    url = f"http://127.0.0.1:{port}/{'readyz' if options.ready else 'healthz'}"
    try:
        with urllib.request.urlopen(url, timeout=options.timeout_s) as reply:
            print(reply.read().decode(errors="replace"))
    except urllib.error.HTTPError as e:
        print(e.read().decode(errors="replace"), file=sys.stderr)
        return 1
    except OSError as e:
        print(f"{url}: {e}", file=sys.stderr)
        return 1
    return 0
