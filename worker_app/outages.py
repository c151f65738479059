"""Which dependency an exception says is unreachable: PostgreSQL, Redis, RabbitMQ or its management API,
the Remnawave panel.

The API answers such an error with ``503`` naming the dependency, and ``worker-app`` with one line
and exit code 3, instead of a traceback. Anything else is not an outage.
"""

from __future__ import annotations

from typing import NamedTuple

import pika.exceptions
import psycopg
import redis.exceptions
import requests
import sqlalchemy.exc
from dramatiq.errors import BrokerConnectionError

from worker_app.clients.cryptobot import CryptoPayUnavailable
from worker_app.clients.remnawave import RemnawaveUnavailable
from worker_app.publishing import PublishTimeout
from worker_app.redaction import redact


class Outage(NamedTuple):
    dependency: str  # "PostgreSQL", "Redis", "RabbitMQ", "the Remnawave panel", "Crypto Pay", …
    setting: str  # the variable that says where it is
    reason: str  # the error's first line, secrets redacted

    def line(self) -> str:
        return f"{self.dependency} is unreachable ({self.setting}): {self.reason}"


_KINDS: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], str, str], ...] = (
    ((sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError, psycopg.OperationalError),
     "PostgreSQL", "DATABASE_URL"),
    ((redis.exceptions.ConnectionError, redis.exceptions.TimeoutError), "Redis", "REDIS_URL"),
    ((BrokerConnectionError, pika.exceptions.AMQPConnectionError, pika.exceptions.AMQPChannelError,
      PublishTimeout), "RabbitMQ", "RABBITMQ_URL"),
    (RemnawaveUnavailable, "the Remnawave panel", "REMNAWAVE_URL"),
    (CryptoPayUnavailable, "Crypto Pay", "CRYPTOBOT_API_URL"),
    ((requests.ConnectionError, requests.Timeout), "the RabbitMQ management API", "RABBITMQ_MANAGEMENT_URL"),
)  # fmt: skip


def _socket_error(error: BaseException, depth: int = 0) -> OSError | None:
    """The socket error pika nests in its connection errors (in ``args``, or as ``exception``)."""
    if isinstance(error, OSError) and error.strerror:
        return error
    inner = [*getattr(error, "args", ()), getattr(error, "exception", None), error.__cause__]
    for arg in inner if depth < 4 else ():
        found = _socket_error(arg, depth + 1) if isinstance(arg, BaseException) else None
        if found is not None:
            return found
    return None


def _reason(error: BaseException) -> str:
    orig = getattr(error, "orig", None)  # SQLAlchemy wraps the driver's error
    amqp = isinstance(error, pika.exceptions.AMQPError | BrokerConnectionError)
    nested = _socket_error(error) if amqp else None
    if nested is not None:
        return f"cannot connect: {nested.strerror}"
    text = str(orig if orig is not None else error).strip()
    first = text.splitlines()[0] if text else type(error).__name__
    return redact(first)[:300]


def outage_of(error: BaseException) -> Outage | None:
    """The outage ``error`` (or an exception it was raised from) reports, or ``None``."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        for kinds, dependency, setting in _KINDS:
            if isinstance(current, kinds):
                if dependency == "PostgreSQL" and not _is_connection_error(current):
                    break
                return Outage(dependency, setting, _reason(current))
        current = current.__cause__ or current.__context__
    return None


def _is_connection_error(error: BaseException) -> bool:
    """An ``OperationalError`` is also a lock timeout or a cancelled statement: only connection
    trouble (no SQLSTATE, or class 08 / 57P0x) is an outage."""
    sqlstate = getattr(getattr(error, "orig", error), "sqlstate", None)
    invalidated = bool(getattr(error, "connection_invalidated", False))
    return invalidated or sqlstate is None or str(sqlstate).startswith(("08", "57P0"))
