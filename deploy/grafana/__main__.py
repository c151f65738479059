"""``python -m deploy.grafana [--check]``: write the dashboards' JSON, or check it is up to date."""

from __future__ import annotations

import argparse
import sys

from deploy.grafana.build import OUTPUT, stale, write


def main(argv: list[str] | None = None) -> int:
    """Write every dashboard (exit 0), or with ``--check`` list the stale ones (exit 1 if any)."""
    parser = argparse.ArgumentParser(prog="python -m deploy.grafana", description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if a committed JSON file is stale")
    args = parser.parse_args(argv)
    if not args.check:
        for path in write():
            print(f"wrote {path}")
        return 0
    outdated = stale()
    for name in outdated:
        print(f"stale: {OUTPUT / name} (run: .venv/bin/python -m deploy.grafana)", file=sys.stderr)
    return 1 if outdated else 0


if __name__ == "__main__":
    sys.exit(main())
