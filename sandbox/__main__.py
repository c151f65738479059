"""``python -m sandbox``: serve the fake Telegram Bot API, the fake Remnawave panel and the fake Crypto Pay
API in the foreground (loopback by default)."""

from __future__ import annotations

import argparse

from sandbox.server import serve


def main(argv: list[str] | None = None) -> None:
    """Parse ``--host`` / ``--telegram-port`` / ``--remnawave-port`` / ``--cryptobot-port`` / ``--demo``
    and run :func:`sandbox.server.serve`."""
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: loopback)")
    parser.add_argument("--telegram-port", type=int, default=8081, help="Telegram Bot API port")
    parser.add_argument("--remnawave-port", type=int, default=8082, help="Remnawave panel API port")
    parser.add_argument("--cryptobot-port", type=int, default=8083, help="Crypto Pay API port")
    parser.add_argument("--demo", action="store_true", help="seed the panel with demo users and nodes")
    args = parser.parse_args(argv)
    serve(
        args.host, args.telegram_port, args.remnawave_port, demo=args.demo, cryptobot_port=args.cryptobot_port
    )


if __name__ == "__main__":
    main()
