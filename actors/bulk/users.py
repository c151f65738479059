"""Bulk user operations (PRD 9.1): one admin action on thousands of panel users, with live progress.

``execute_bulk_user_operation(operation, user_ids, params, initiated_by)``:

* **operations** — ``disable`` / ``enable`` (bulk ``update`` of ``status``), ``reset_traffic``,
  ``delete``, ``extend`` (``params = {"days": 1..9999}``; the panel adds them to the expiry). The
  operation and its params are checked before anything runs (the API answers 422).
* **ids** — de-duplicated (first occurrence kept) and validated first: an id that is not a positive
  integer is *reported* in ``errors``, never fatal. Bulk calls leave ids the panel does not know
  untouched and silent, so a user already deleted is simply done (``delete`` never errors on one).
* **batches** of BULK_BATCH_SIZE (50) users, one panel call each; a refused call is narrowed down
  to the users that fail (:mod:`actors.bulk.narrowing`) — never one call per user for the job.
  A panel that does not answer (connection, 502-504, timeout, breaker open) is waited for, with
  backoff, up to :data:`PATIENCE_S`; then the job stops (dead-lettered, its journal kept: replaying
  it resumes where it stopped). A rejected token stops it at once.
* **journal** — each batch is recorded in ``bulk_batches`` before its calls and completed after
  them (:mod:`actors.bulk.journal`): a redelivered job skips the batches done, and reads back from
  the panel the users of the one it died in, sending only those not done yet — each user's action
  is applied once, even ``extend``.
* **progress** after every batch (:mod:`actors.bulk.progress`): the Redis key
  ``cybervpn:bulk:{job_id}:progress`` = ``{"processed", "total", "failed", "errors"}``, a
  ``bulk_progress`` event on ``cybervpn:events``, and the job row.
* **cancel** (``worker-app jobs cancel ID``, the API, the dashboard) — the job stops after the
  current batch and reports what it did.
* **summary** once to the initiating admin in Telegram (:mod:`actors.bulk.admins`), and one log
  line ``bulk operation done`` with the counts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from html import escape
from typing import Any, Literal

import dramatiq
from dramatiq.middleware import CurrentMessage

from actors.bulk import QUEUE, admins
from actors.bulk.journal import Journal, StoredBatch
from actors.bulk.metrics import calls_total, users_total
from actors.bulk.narrowing import BatchOutcome, apply_batch
from actors.bulk.progress import Progress, ProgressWriter
from worker_app.arguments import checked_by
from worker_app.clients.remnawave import (
    STREAM_MAX_PAGE,
    RemnawaveAuthError,
    RemnawaveClient,
    RemnawaveError,
    RemnawaveNotFound,
    RemnawaveRejected,
    RemnawaveUnavailable,
    User,
)
from worker_app.config import Settings
from worker_app.db import Database
from worker_app.errors import JobCancelled, PermanentError
from worker_app.jobs import original_message_id, report_progress
from worker_app.runtime import get_runtime

log = logging.getLogger("actors.bulk")

OperationName = Literal["disable", "enable", "reset_traffic", "delete", "extend"]
MAX_EXTEND_DAYS = 9999
"""The panel's limit on ``extendDays``."""
PATIENCE_S = (1.0, 2.0, 4.0, 8.0, 16.0)
"""Waits before each new try of a call the panel did not answer (31 s in all), then the job stops."""
SYSTEMIC_MIN = 10
"""A batch of at least this many users that all fail stops the job: the panel refuses the operation."""
EXPIRY_SLACK = timedelta(minutes=1)
"""How much less than ``before + days`` an expiry read back may be and still count as extended."""


# -- what each operation sends, and how a user read back shows it done ------------------------------


@dataclass(frozen=True)
class Evidence:
    """What a user read back after a crash is judged by: when its batch began, the users' expiry
    before it (``extend`` only, by id), the days being added."""

    started_at: datetime
    expire_before: Mapping[int, datetime]
    days: int = 0


@dataclass(frozen=True)
class Operation:
    """A bulk operation: its panel endpoint and body, and when a user read back is done already."""

    name: str
    path: str
    body: Callable[[Mapping[str, Any]], dict[str, Any]]
    done: Callable[[User, Evidence], bool]


def _reset_since(user: User, evidence: Evidence) -> bool:
    # a reset by anyone since the batch began counts: resetting again would change nothing that matters
    reset = user.last_traffic_reset_at
    return reset is not None and reset >= evidence.started_at


def _extended(user: User, evidence: Evidence) -> bool:
    # extend is relative: only the expiry itself, against the one read before the batch, can tell
    before = evidence.expire_before.get(user.id)
    return before is None or user.expire_at >= before + timedelta(days=evidence.days) - EXPIRY_SLACK


OPERATIONS: dict[str, Operation] = {
    op.name: op
    for op in (
        Operation("disable", "/api/users/bulk/update", lambda _: {"fields": {"status": "DISABLED"}},
                  lambda user, _evidence: user.status != "ACTIVE"),
        Operation("enable", "/api/users/bulk/update", lambda _: {"fields": {"status": "ACTIVE"}},
                  lambda user, _evidence: user.status == "ACTIVE"),
        Operation("reset_traffic", "/api/users/bulk/reset-traffic", lambda _: {}, _reset_since),
        Operation("delete", "/api/users/bulk/delete", lambda _: {}, lambda _user, _evidence: False),
        Operation("extend", "/api/users/bulk/extend-expiration-date",
                  lambda params: {"extendDays": params["days"]}, _extended),
    )
}  # fmt: skip


def check_params(operation: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """``params`` for ``operation``, checked: ``{"days": 1..9999}`` for ``extend``, nothing for the
    others; a :class:`PermanentError` naming what is wrong otherwise."""
    if operation not in OPERATIONS:
        raise PermanentError(f"operation must be one of {', '.join(OPERATIONS)}, not {operation!r}")
    given = dict(params or {})
    if operation != "extend":
        if given:
            raise PermanentError(f"params: {operation} takes no parameters, got {sorted(map(str, given))}")
        return {}
    days = given.pop("days", None)
    if given:
        raise PermanentError(f"params: extend takes only 'days', got also {sorted(map(str, given))}")
    if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= MAX_EXTEND_DAYS:
        raise PermanentError(f"params.days: extend needs a whole number of days, 1-{MAX_EXTEND_DAYS}, "
                             f"got {days!r}")  # fmt: skip
    return {"days": days}


# -- the ids ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """The job's users: valid distinct ids in the order given, what was refused, duplicates dropped."""

    user_ids: list[int]
    invalid: list[dict[str, Any]]
    duplicates: int

    def batches(self, size: int) -> list[list[int]]:
        return [self.user_ids[i : i + size] for i in range(0, len(self.user_ids), size)]


def plan_ids(raw: Sequence[Any]) -> Plan:
    """Validate and de-duplicate ``raw``: a positive integer (or its decimal string) is a user id;
    anything else is reported as ``{"user_id": <as given>, "error": ...}``."""
    seen: dict[int, None] = {}
    invalid: list[dict[str, Any]] = []
    duplicates = 0
    for position, value in enumerate(raw):
        user_id = _user_id(value)
        if user_id is None:
            plain = isinstance(value, str | int | float) and not isinstance(value, bool)
            shown = value if plain else repr(value)
            invalid.append({
                "user_id": shown[:64] if isinstance(shown, str) else shown,
                "error": f"user_ids[{position}]: not a user id (a positive integer)",
            })  # fmt: skip
        elif user_id in seen:
            duplicates += 1
        else:
            seen[user_id] = None
    return Plan(list(seen), invalid, duplicates)


def _user_id(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip()
        value = int(text) if text.isascii() and text.isdigit() else None
    if isinstance(value, int) and 1 <= value < 2**63:
        return value
    return None


# -- calling the panel -----------------------------------------------------------------------------


class Sender:
    """One operation's bulk calls, counted; a refusal comes back as its one-line error."""

    def __init__(self, client: RemnawaveClient, operation: Operation, params: Mapping[str, Any],
                 sleep: Callable[[float], None] = time.sleep) -> None:  # fmt: skip
        self.client = client
        self.operation = operation
        self.body = operation.body(params)
        self.sleep = sleep
        self.calls = 0

    def __call__(self, user_ids: Sequence[int]) -> str | None:
        body = {"userIds": list(user_ids), **self.body}
        try:
            self.patiently(lambda: self.client.call("POST", self.operation.path, json=body))
        except RemnawaveAuthError:
            raise
        except RemnawaveUnavailable as e:
            if e.error_code is None:
                raise
            return _one_line(e)
        except RemnawaveError as e:  # the panel refused this request: narrow it down
            return _one_line(e)
        return None

    def read_back(self, user_id: int) -> User | None:
        """The user as the panel has it now (``None``: not in the panel)."""
        try:
            user: User = self.patiently(lambda: self.client.get_user(user_id))
        except RemnawaveNotFound:
            return None
        return user

    def patiently(self, call: Callable[[], Any]) -> Any:
        for wait_s in (*PATIENCE_S, None):
            self.calls += 1
            calls_total().labels(self.operation.name).inc()
            try:
                return call()
            except RemnawaveUnavailable as e:
                if e.error_code is not None or wait_s is None:
                    raise
                log.warning("bulk %s: the panel did not answer (%s); trying again in %.0f s",
                            self.operation.name, e, wait_s)  # fmt: skip
                self.sleep(max(wait_s, self.client.breaker.blocked_for()))
        raise AssertionError("unreachable")


def _one_line(error: RemnawaveError) -> str:
    return " ".join(str(error).split())[:300]


# -- the run ---------------------------------------------------------------------------------------


@dataclass
class Run:
    """What a run needs besides its arguments (a runtime in the worker; tests build their own)."""

    database: Database
    client: RemnawaveClient
    settings: Settings
    progress: ProgressWriter
    report: Callable[[Progress], None] = lambda _progress: None
    """Called after every batch (the job row; raises :class:`JobCancelled` when cancelled)."""
    sleep: Callable[[float], None] = time.sleep


@dataclass
class Result:
    """The job's outcome (``as_dict()`` is its result and the summary's source)."""

    operation: str
    status: str
    progress: Progress
    duplicates_removed: int
    invalid: int
    verified: int = 0
    calls: int = 0
    duration_s: float = 0.0
    stopped: str | None = None
    error: RemnawaveError | None = None
    params: dict[str, Any] = field(default_factory=dict)
    """The operation's checked params (``{"days": n}`` for ``extend``)."""
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        p = self.progress
        return {
            "operation": self.operation, "status": self.status, "total": p.total, "processed": p.processed,
            "succeeded": p.processed - p.failed, "failed": p.failed, "invalid": self.invalid,
            "duplicates_removed": self.duplicates_removed, "verified_after_restart": self.verified,
            "calls": self.calls, "duration_seconds": round(self.duration_s, 3), "errors": p.errors,
            **({"stopped": self.stopped} if self.stopped else {}), **self.extra,
        }  # fmt: skip


def execute(run: Run, operation_id: str, operation: str, user_ids: Sequence[Any],
            params: Mapping[str, Any] | None) -> Result:  # fmt: skip
    """Apply ``operation`` to ``user_ids`` batch by batch, resuming ``operation_id``'s journal."""
    started = time.monotonic()
    op = OPERATIONS[operation]
    checked = check_params(operation, params)
    plan = plan_ids(user_ids)
    progress = Progress(total=len(plan.user_ids), errors=list(plan.invalid))
    result = Result(operation, "running", progress, plan.duplicates, len(plan.invalid), params=checked)
    sender = Sender(run.client, op, checked, sleep=run.sleep)
    journal = Journal(run.database, operation_id)
    stored = journal.stored()
    size = run.settings.bulk_batch_size
    batches = plan.batches(size)
    unfinished = any(not (b in stored and stored[b].finished) for b in range(len(batches)))
    expiries = _expiries(sender, set(plan.user_ids)) if op.name == "extend" and unfinished else {}
    finished = {n for n, b in stored.items() if b.finished and n < len(batches)}
    for batch_no in sorted(finished):  # a redelivery: what earlier runs did counts from the start
        progress.add(len(batches[batch_no]), stored[batch_no].failed)
        result.verified += stored[batch_no].verified
    run.progress.write(operation_id, progress, "running")
    try:
        for batch_no, batch in enumerate(batches):
            if batch_no in finished:
                continue
            done = stored.get(batch_no)
            before = {u: expiries[u] for u in batch if u in expiries}
            outcome, verified = _run_batch(journal, sender, op, batch_no, batch, stored=done, before=before,
                                           days=checked.get("days", 0))  # fmt: skip
            failed = [{"user_id": u, "error": e} for u, e in outcome.failed.items()]
            if len(failed) >= SYSTEMIC_MIN and not outcome.applied and len(failed) == len(batch) - verified:
                progress.add(len(batch), failed)
                raise RemnawaveRejected(
                    f"the panel refused every user of batch {batch_no + 1} ({failed[0]['error']}): the "
                    f"operation itself is refused, not single users; stopped"
                )
            progress.add(len(batch), failed)
            result.verified += verified
            users_total().labels(operation, "succeeded").inc(len(batch) - len(failed))
            users_total().labels(operation, "failed").inc(len(failed))
            run.progress.write(operation_id, progress, "running")
            run.report(progress)
        result.status = "completed"
    except JobCancelled as e:
        result.status, result.stopped = "cancelled", str(e)
    except RemnawaveError as e:
        result.status, result.stopped, result.error = "stopped", _one_line(e), e
    finally:
        result.calls = sender.calls + journal.calls_before
        result.duration_s = time.monotonic() - started
    run.progress.write(operation_id, progress, result.status, final=True)
    return result


def _run_batch(journal: Journal, sender: Sender, op: Operation, batch_no: int, batch: list[int], *,
               stored: StoredBatch | None, before: Mapping[int, datetime],
               days: int) -> tuple[BatchOutcome, int]:  # fmt: skip
    """One batch: recorded, sent (only its users not done yet, after a crash in it), completed.
    ``before``: the users' expiry before the batch (``extend``), recorded with it."""
    calls_before = sender.calls
    verified = 0
    to_send = batch
    if stored is None:
        journal.start(batch_no, len(batch), expire_before=before)
    else:  # the worker died during this batch: read its users back, send only those not done
        to_send = []
        evidence = Evidence(stored.started_at, stored.expire_before, days)
        for user_id in batch:
            user = sender.read_back(user_id)
            if user is None or op.done(user, evidence):
                verified += 1
            else:
                to_send.append(user_id)
    outcome = apply_batch(to_send, sender, max_failed=max(5, len(batch) // 5))
    journal.finish(batch_no, succeeded=len(batch) - len(outcome.failed), verified=verified,
                   failed=outcome.failed, calls=sender.calls - calls_before)  # fmt: skip
    return outcome, verified


def _expiries(sender: Sender, wanted: set[int]) -> dict[int, datetime]:
    """The panel's ``expireAt`` of the ``wanted`` users, by id, from one scan of ``/api/users/stream``
    (pages of 1,000: 100 calls for 100,000 panel users). ``extend`` records them with each batch."""
    found: dict[int, datetime] = {}
    pages = sender.client.user_pages(page_size=STREAM_MAX_PAGE)
    while True:
        page = sender.patiently(lambda: next(pages, None))
        if page is None:
            return found
        found.update((u.id, u.expire_at) for u in page if u.id in wanted)


# -- the summary -----------------------------------------------------------------------------------

_OPERATION_WORDS = {"disable": "Disable", "enable": "Enable", "reset_traffic": "Traffic reset",
                    "delete": "Delete", "extend": "Extend"}  # fmt: skip


def summary_text(result: Result, operation_id: str, *, first_errors: int) -> str:
    """The admin's Telegram summary (HTML): counts, duration, the first few errors."""
    p = result.progress
    days = result.params.get("days")
    what = _OPERATION_WORDS[result.operation] + (f" +{days} d" if days else "")
    head = "done" if result.status == "completed" else result.status
    lines = [
        f"<b>Bulk operation {escape(head)}</b>: {escape(what)}",
        f"Users: {p.total} · succeeded {p.processed - p.failed} · failed {p.failed}"
        + (f" · not processed {p.total - p.processed}" if p.processed < p.total else ""),
    ]
    if result.invalid or result.duplicates_removed:
        lines.append(f"Invalid ids {result.invalid} · duplicates removed {result.duplicates_removed}")
    lines.append(f"Duration {result.duration_s:.1f} s · job <code>{escape(operation_id)}</code>")
    if result.stopped:
        lines.append(f"Why: {escape(result.stopped[:300])}")
    shown = p.errors[:first_errors]
    if shown:
        lines.append("First errors:")
        lines.extend(f"• {escape(str(e['user_id']))}: {escape(str(e['error'])[:200])}" for e in shown)
        if len(p.errors) > len(shown):
            lines.append(f"… and {len(p.errors) - len(shown)} more (the job's result lists them all)")
    return "\n".join(lines)


# -- the actor -------------------------------------------------------------------------------------


def _arguments(arguments: dict[str, Any]) -> None:
    try:
        check_params(arguments["operation"], arguments.get("params"))
    except PermanentError as e:
        raise ValueError(str(e)) from None


@dramatiq.actor(queue_name=QUEUE, store_results=True)
@checked_by(_arguments)
def execute_bulk_user_operation(
    operation: OperationName,
    user_ids: list[Any],
    params: dict[str, Any] | None = None,
    initiated_by: str | None = None,
) -> dict[str, Any]:
    """Apply one operation to many panel users in batches, with progress, resumable (see the module)."""
    runtime = get_runtime()
    message = CurrentMessage.get_current_message()
    operation_id = original_message_id(runtime.database, message) if message else "local"
    run = Run(
        runtime.database, runtime.remnawave, runtime.settings, ProgressWriter(runtime.redis),
        report=lambda p: report_progress(p.processed, p.total, p.failed, throttle=False),
    )  # fmt: skip
    result = execute(run, operation_id, operation, user_ids, params)
    data = result.as_dict()
    chats = admins.recipients(runtime.settings, initiated_by)
    if result.status != "stopped":  # a stopped job is reported by its dead letter; its replay sends this
        text = summary_text(result, operation_id, first_errors=runtime.settings.bulk_summary_errors)
        data["summary_queued"] = admins.notify(runtime.database, f"bulk:{operation_id}:summary", text, chats)
    log.info(
        "bulk operation done: %s %s: %d/%d processed, %d failed, %d calls, %.1f s",
        operation, result.status, result.progress.processed, result.progress.total, result.progress.failed,
        result.calls, result.duration_s,
        extra={k: v for k, v in data.items() if k != "errors"} | {"job_id": operation_id},
    )  # fmt: skip
    if result.status == "cancelled":
        raise JobCancelled(result.stopped or "cancelled")
    if result.error is not None:  # dead-lettered; a replay resumes from the last completed batch
        raise result.error
    return data
