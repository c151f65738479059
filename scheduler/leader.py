"""Leader election: a PostgreSQL session-level advisory lock held on the scheduler's own connection.

The lock dies with its holder: when the leader process exits or is killed, the kernel closes its
socket and PostgreSQL releases the lock at once. For a leader that vanishes without closing its
socket (host loss, network partition, a frozen process) the session is ended by the server after
``idle_session_timeout`` (8 s; the leader talks every SCHEDULER_LEADER_POLL_S) and by TCP
keepalives, so a standby takes over within 10 s.

The leader fires only through :meth:`LeaderLock.connection`, i.e. on the connection that holds the
lock: a leader whose connection has failed cannot fire, and drops back to standby the moment any
statement on it fails.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import psycopg

log = logging.getLogger(__name__)

#: The server ends a lock session that has said nothing for this long (PostgreSQL ≥ 14).
IDLE_SESSION_TIMEOUT_MS = 8000
STATEMENT_TIMEOUT_MS = 5000


class NotLeader(Exception):
    """This process does not hold the scheduler lock."""


def lock_key(name: str) -> int:
    """The 64-bit advisory-lock key of ``name`` (signed, as PostgreSQL's bigint)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


@dataclass(frozen=True)
class Holder:
    """A scheduler process connected to the lock, as PostgreSQL sees it."""

    application_name: str
    client_addr: str | None
    backend_start: Any
    leader: bool


def holders(conn: psycopg.Connection[Any], lock_name: str) -> list[Holder]:
    """Every scheduler session of ``lock_name`` and which one holds the lock (from pg_locks)."""
    key = lock_key(lock_name)
    rows = conn.execute(
        """
        SELECT a.application_name, host(a.client_addr), a.backend_start,
               EXISTS (SELECT 1 FROM pg_locks l
                       WHERE l.pid = a.pid AND l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
                         AND l.classid::bigint = (%(key)s >> 32) & 4294967295
                         AND l.objid::bigint = %(key)s & 4294967295) AS leader
        FROM pg_stat_activity a
        WHERE a.application_name LIKE %(prefix)s AND a.datname = current_database()
        ORDER BY leader DESC, a.backend_start
        """,
        {"key": key, "prefix": f"{lock_name} %"},
    ).fetchall()
    return [Holder(r[0], r[1], r[2], bool(r[3])) for r in rows]


class LeaderLock:
    """Acquires, keeps and checks the lock; thread-safe (fires and the elector share the connection)."""

    def __init__(self, conninfo: str, lock_name: str, process_name: str) -> None:
        self.conninfo = conninfo
        self.lock_name = lock_name
        self.application_name = f"{lock_name} {process_name}"[:63]
        self.key = lock_key(lock_name)
        self.is_leader = False
        self.last_error: str | None = None
        self._conn: psycopg.Connection[Any] | None = None
        self._mutex = threading.RLock()

    def poll(self) -> bool:
        """Try to take the lock (standby) or prove it is still held (leader); returns leadership."""
        with self._mutex:
            try:
                conn = self._connection()
                if self.is_leader:
                    conn.execute("SELECT 1")
                else:
                    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
                    self.is_leader = bool(row and row[0])
                self.last_error = None
            except psycopg.Error as e:
                self._drop(e)
            return self.is_leader

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        """The lock connection, held exclusively; raises :class:`NotLeader` unless leading.

        Any connection-level failure inside the block ends the leadership before it propagates.
        """
        with self._mutex:
            if not self.is_leader or self._conn is None:
                raise NotLeader(self.last_error or "standby")
            try:
                yield self._conn
            except psycopg.OperationalError as e:
                self._drop(e)
                raise
            except psycopg.Error:
                if self._conn.closed or self._conn.broken:
                    self._drop(None)
                raise

    def release(self) -> None:
        """Give the lock up (graceful stop). Unlocked explicitly before the session closes: the server
        frees a closed session's locks only when its backend exits, a moment after the client has
        moved on, and a standby polling in that moment would still find the lock taken."""
        with self._mutex:
            was_leader, self.is_leader = self.is_leader, False
            if self._conn is not None:
                if was_leader and not (self._conn.closed or self._conn.broken):
                    with suppress(psycopg.Error):  # going anyway: closing frees it too
                        self._conn.execute("SELECT pg_advisory_unlock(%s)", (self.key,))
                self._conn.close()
                self._conn = None

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = None
            conn = psycopg.connect(
                self.conninfo,
                autocommit=True,
                connect_timeout=3,
                application_name=self.application_name,
                keepalives=1,
                keepalives_idle=5,
                keepalives_interval=2,
                keepalives_count=2,
                tcp_user_timeout=5000,
            )
            conn.execute(f"SET statement_timeout = {STATEMENT_TIMEOUT_MS}")
            for setting in (
                "tcp_keepalives_idle = 5",
                "tcp_keepalives_interval = 2",
                "tcp_keepalives_count = 2",
            ):
                conn.execute(f"SET {setting}")
            if conn.info.server_version >= 140000:
                conn.execute(f"SET idle_session_timeout = {IDLE_SESSION_TIMEOUT_MS}")
            self._conn = conn
        return self._conn

    def _drop(self, error: BaseException | None) -> None:
        was_leader = self.is_leader
        self.is_leader = False
        if error is not None:
            self.last_error = " ".join(str(error).split())[:200] or type(error).__name__
        if self._conn is not None:
            with suppress(psycopg.Error):
                self._conn.close()
            self._conn = None
        if was_leader:
            log.error("lost the scheduler lock (%s): firing stopped, back to standby", self.last_error)
