"""Idempotency keys: a producer's retry of a job-creating request gets the job its first attempt
created instead of a second one (Stripe's ``Idempotency-Key``).

:func:`once` runs ``create`` (record the job, publish its message) at most once per key:

* the key is reserved in PostgreSQL (``idempotency_keys``, one row per key) *before* anything is
  published, as ``pending`` with the request's scope (the endpoint's path) and a hash of its body;
  once the job is published the row is ``done`` with the job's id;
* the same key with the same scope and body answers that job's id (``replayed``) and publishes
  nothing; with another scope or body it is :class:`KeyReused`;
* a request that finds the key ``pending`` polls until the first one is done, at most
  ``WAIT_FOR_FIRST_S``; then :class:`KeyInProgress`;
* ``create`` failing (RabbitMQ refused, PostgreSQL gone) removes the reservation, so the client's
  retry with the same key runs; a reservation still ``pending`` after ``PENDING_TAKEOVER_S`` was
  left by a process that died and is taken over;
* a key older than ``IDEMPOTENCY_TTL_S`` is absent: its reuse creates a new job. Expired rows are
  deleted on the way in (that key's own, and up to ``SWEEP_ROWS`` others per reservation), so the
  table needs no cleanup job.

Times are PostgreSQL's ``now()``, the same for every API process.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from worker_app.db import Database
from worker_app.errors import WorkerError

log = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255
#: How long a key stands for its first request (then it is absent, and may be reused).
IDEMPOTENCY_TTL_S = 24 * 3600
#: A reservation still pending this long was left by a process that died: another may take it over.
PENDING_TAKEOVER_S = 60
#: How long a request waits for the first one with its key to finish before answering 409.
WAIT_FOR_FIRST_S = 10.0
POLL_FIRST_S = 0.02
POLL_MAX_S = 0.25
#: What a 409 tells the client (``Retry-After``).
RETRY_AFTER_S = 2
#: Expired rows deleted per new reservation (on the ``created_at`` index).
SWEEP_ROWS = 100


class KeyReused(WorkerError):
    """The key was used within its lifetime for another request (another endpoint or body)."""

    detail = (
        "a key stands for one request: repeat it with the same endpoint and body, or send a new key "
        f"(a key is kept {IDEMPOTENCY_TTL_S // 3600} h)"
    )


class KeyInProgress(WorkerError):
    """The key's first request has not finished within ``WAIT_FOR_FIRST_S``."""

    retry_after_s = RETRY_AFTER_S
    detail = "retry the same request later; it answers the first request's job once that is published"


@dataclass(frozen=True)
class Accepted:
    """The job a request stands for; ``replayed`` when an earlier request with its key created it."""

    job_id: str
    replayed: bool


@dataclass(frozen=True)
class Reservation:
    """A key's row as a request found it; ``owned`` when that request has just reserved it."""

    scope: str
    body_hash: str
    state: str
    job_id: str | None
    owned: bool = False


def fingerprint(scope: str, body: Any) -> str:
    """The request's identity: SHA-256 of its scope and its parsed JSON body, keys sorted (so the
    same JSON sent with other spacing or key order is the same request)."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"{scope}\n{canonical}".encode()).hexdigest()


def valid_key(key: str) -> bool:
    """1 to ``MAX_KEY_LENGTH`` printable ASCII characters (space to ``~``)."""
    return 0 < len(key) <= MAX_KEY_LENGTH and key.isascii() and key.isprintable()


def once(database: Database, key: str | None, scope: str, body: Any, create: Callable[[], str]) -> Accepted:
    """The job of the request ``(scope, body)`` under ``key``: ``create()`` (which records and publishes
    it, returning its id) runs only for the key's first request; ``key`` None always runs it.

    Raises :class:`KeyReused` (another request had the key), :class:`KeyInProgress` (the first is not
    done in time) or whatever ``create`` raised (the key is released first)."""
    if key is None:
        return Accepted(create(), replayed=False)
    body_hash = fingerprint(scope, body)
    deadline = time.monotonic() + WAIT_FOR_FIRST_S
    pause = POLL_FIRST_S
    while True:
        owner = uuid.uuid4().hex
        found = _reserve(database, key, scope, body_hash, owner)
        if found is None:
            continue  # released between our insert and our read: try again at once
        if found.owned:
            return Accepted(_run(database, key, owner, create), replayed=False)
        if (found.scope, found.body_hash) != (scope, body_hash):
            raise KeyReused(_reused(found, scope))
        if found.job_id is not None:
            return Accepted(found.job_id, replayed=True)
        if time.monotonic() >= deadline:
            raise KeyInProgress(f"a request with this {HEADER} is in progress")
        time.sleep(pause)
        pause = min(pause * 2, POLL_MAX_S)


def _reused(found: Reservation, scope: str) -> str:
    if found.scope != scope:
        return f"{HEADER}: already used for another endpoint ({found.scope})"
    return f"{HEADER}: already used with a different request body"


_FORGET = text("""
    DELETE FROM idempotency_keys
    WHERE key = :key AND (created_at < now() - make_interval(secs => :ttl)
                          OR (state = 'pending' AND created_at < now() - make_interval(secs => :takeover)))
""")
_INSERT = text("""
    INSERT INTO idempotency_keys (key, scope, body_hash, state, owner)
    VALUES (:key, :scope, :body_hash, 'pending', :owner)
    ON CONFLICT (key) DO NOTHING RETURNING key
""")
_FIND = text("SELECT scope, body_hash, state, job_id FROM idempotency_keys WHERE key = :key")
_SWEEP = text("""
    DELETE FROM idempotency_keys WHERE key IN (
        SELECT key FROM idempotency_keys WHERE created_at < now() - make_interval(secs => :ttl)
        ORDER BY created_at LIMIT :n FOR UPDATE SKIP LOCKED)
""")


def _reserve(database: Database, key: str, scope: str, body_hash: str, owner: str) -> Reservation | None:
    """Reserve ``key`` for ``owner`` (an ``owned`` reservation), else the row another request holds
    (None: it was released between our insert and our read)."""
    with database.transaction() as s:
        s.execute(_FORGET, {"key": key, "ttl": IDEMPOTENCY_TTL_S, "takeover": PENDING_TAKEOVER_S})
        inserted = s.execute(_INSERT, {"key": key, "scope": scope, "body_hash": body_hash, "owner": owner})
        if inserted.first() is not None:
            s.execute(_SWEEP, {"ttl": IDEMPOTENCY_TTL_S, "n": SWEEP_ROWS})
            return Reservation(scope, body_hash, "pending", None, owned=True)
        row = s.execute(_FIND, {"key": key}).first()
    return Reservation(*row) if row is not None else None


def _run(database: Database, key: str, owner: str, create: Callable[[], str]) -> str:
    """``create()`` under ``owner``'s reservation of ``key``: done with its job id, or released."""
    try:
        job_id = create()
    except BaseException:
        try:
            with database.transaction() as s:
                _release(s, key, owner)
        except Exception:
            log.warning("%s %r not released; it can be reused after %d s", HEADER, key,
                        PENDING_TAKEOVER_S, exc_info=True)  # fmt: skip
        raise
    try:
        with database.transaction() as s:
            _complete(s, key, owner, job_id)
    except Exception:
        # The job is recorded and published: the request succeeded. Its retry may create a second
        # job once the reservation is taken over.
        log.warning("%s %r: job %s published but not recorded under the key", HEADER, key, job_id,
                    exc_info=True)  # fmt: skip
    return job_id


def _release(s: Session, key: str, owner: str) -> None:
    s.execute(text("DELETE FROM idempotency_keys WHERE key = :key AND owner = :owner"),
              {"key": key, "owner": owner})  # fmt: skip


_COMPLETE = text("""
    UPDATE idempotency_keys SET state = 'done', job_id = :job_id WHERE key = :key AND owner = :owner
    RETURNING key
""")


def _complete(s: Session, key: str, owner: str, job_id: str) -> None:
    done = s.execute(_COMPLETE, {"key": key, "owner": owner, "job_id": job_id}).first()
    if done is None:
        log.warning("%s %r: its reservation was taken over before job %s was recorded", HEADER, key, job_id)
