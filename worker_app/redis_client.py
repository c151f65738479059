"""Redis access. Every key the project writes starts with ``cybervpn:`` (a contract with the
backend and the admin SPA); build keys with :func:`key` so none is written without it."""

from __future__ import annotations

import redis

PREFIX = "cybervpn:"


def key(*parts: str | int) -> str:
    """``key("health", node, "current")`` → ``cybervpn:health:<node>:current``."""
    return PREFIX + ":".join(str(p) for p in parts)


def make_redis(url: str) -> redis.Redis:
    """A pooled client returning ``str``; creating it does not connect."""
    return redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=5,
        socket_connect_timeout=5,
        health_check_interval=30,
    )
