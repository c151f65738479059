"""``python -m sandbox``: serve the fake Telegram Bot API in the foreground (loopback by default)."""

from __future__ import annotations

import argparse

from sandbox.server import serve


def main(argv: list[str] | None = None) -> None:
    """Parse ``--host`` / ``--telegram-port`` and run :func:`sandbox.server.serve`."""
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: loopback)")
    parser.add_argument("--telegram-port", type=int, default=8081, help="Telegram Bot API port")
    args = parser.parse_args(argv)
    serve(args.host, args.telegram_port)


if __name__ == "__main__":
    main()
