"""Pod-local health: ``/healthz`` (alive) and ``/readyz`` (ready) answered by each process from its
own state, in well under 50 ms, with no broker round trip — what Kubernetes probes and Docker's
``HEALTHCHECK`` call (``worker-app health``). ``worker-app ping`` stays the operator's fleet-wide check.

A process keeps a :class:`Health`: its loops *beat* (a loop that stops beating for
:data:`STALE_S` makes the process not alive), and a background checker *reports* on its
dependencies (RabbitMQ, PostgreSQL, …: a dependency not reported ok within :data:`STALE_S` makes it
not ready). Answers are JSON: ``{"status": "ok" | "failing", "checks": {name: "ok" | why}}``, 200
or 503.

* **worker** (``dramatiq worker_app``): every worker process writes its snapshot to
  ``<metrics run dir>/health/<pid>.json`` every :data:`WRITE_EVERY_S` (its consumer and worker
  threads alive; every consumer's RabbitMQ connection open; PostgreSQL answering ``SELECT 1``); the
  metrics process serves ``/healthz`` and ``/readyz`` on METRICS_PORT from those files
  (:func:`fleet_answer`): a file not rewritten for STALE_S is a hung process;
* **scheduler**: on SCHEDULER_METRICS_PORT, from its elector and publisher loops and the leader
  lock's polls (ready: a leader that can publish, or a standby whose lock polls succeed);
* **serve**: ``/healthz`` and ``/readyz`` on the API port, from a checker thread's pings.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

STALE_S = 30.0
"""A loop that has not beaten, or a dependency not reported ok, for this long is failing."""
WRITE_EVERY_S = 2.0
"""How often a worker process writes its snapshot (and a checker pings its dependencies)."""
HEALTH_DIR = "health"


class Health:
    """One process's loops and dependencies; thread-safe."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._beats: dict[str, float] = {}
        self._dependencies: dict[str, tuple[str, float]] = {}  # name -> ("ok" or why not, when)
        self.stopping = False

    def beat(self, loop: str) -> None:
        """``loop`` made progress now."""
        with self._lock:
            self._beats[loop] = self._clock()

    def report(self, dependency: str, problem: str | None) -> None:
        """``dependency`` is ok (``problem`` None) or not, and why."""
        with self._lock:
            self._dependencies[dependency] = (problem or "ok", self._clock())

    def forget(self, name: str) -> None:
        with self._lock:
            self._beats.pop(name, None)
            self._dependencies.pop(name, None)

    def liveness(self) -> dict[str, str]:
        """Each loop: ``ok``, or how long it has not beaten."""
        now = self._clock()
        with self._lock:
            beats = dict(self._beats)
        return {
            loop: "ok" if now - at < STALE_S else f"no progress for {now - at:.0f} s"
            for loop, at in beats.items()
        }

    def readiness(self) -> dict[str, str]:
        """Liveness, then each dependency: ``ok`` or why not (also when its report is stale)."""
        now = self._clock()
        with self._lock:
            dependencies = dict(self._dependencies)
        checks = self.liveness()
        for name, (state, at) in dependencies.items():
            fresh = now - at < STALE_S
            checks[name] = state if fresh else f"not checked for {now - at:.0f} s"
        if self.stopping:
            checks["process"] = "shutting down"
        return checks

    def snapshot(self, pid: int) -> dict[str, Any]:
        """What a worker process writes for the metrics process to answer from."""
        return {"pid": pid, "alive": self.liveness(), "ready": self.readiness()}


def ping_database(database: Any) -> None:
    """``SELECT 1`` on a pooled connection of ``database`` (a :class:`~worker_app.db.Database`)."""
    from sqlalchemy import text

    with database.engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def answer(checks: dict[str, str], *, empty_ok: bool = False) -> tuple[int, bytes]:
    """The probe's status and JSON body for ``checks``."""
    ok = all(v == "ok" for v in checks.values()) and (bool(checks) or empty_ok)
    body = json.dumps({"status": "ok" if ok else "failing", "checks": checks}, separators=(",", ":"))
    return (200 if ok else 503), body.encode()


def probe(health: Health, path: str) -> tuple[int, bytes] | None:
    """``/healthz`` or ``/readyz`` for one process's ``health``; ``None`` for any other path."""
    if path == "/healthz":
        return answer(health.liveness(), empty_ok=True)
    if path == "/readyz":
        return answer(health.readiness())
    return None


class DependencyChecker:
    """A daemon thread that runs each check every WRITE_EVERY_S and reports it to ``health``: a check
    returns nothing when the dependency is fine and raises when it is not (the error, on one line, is
    the reason). A check that hangs reports nothing, so the dependency goes stale: not ready."""

    def __init__(self, health: Health, checks: dict[str, Callable[[], object]], *, name: str) -> None:
        self.health = health
        self.checks = checks
        self.name = name
        self._stop = threading.Event()
        self._started = threading.Event()
        self._lock = threading.Lock()
        self.first_round = threading.Event()

    def start(self) -> None:
        """Start checking (once; later calls do nothing)."""
        with self._lock:
            if self._started.is_set():
                return
            self._started.set()
        threading.Thread(target=self._loop, name=self.name, daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def run_once(self) -> None:
        for dependency, check in self.checks.items():
            try:
                check()
                self.health.report(dependency, None)
            except Exception as e:
                self.health.report(dependency, f"{type(e).__name__}: {' '.join(str(e).split())[:120]}")

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.run_once()
            self.first_round.set()
            self._stop.wait(WRITE_EVERY_S)


# -- a worker: one file per worker process, served by the metrics process ---------------------------


def write_snapshot(directory: Path, health: Health, pid: int) -> None:
    """Atomically (re)write this process's snapshot."""
    directory.mkdir(parents=True, exist_ok=True)
    temporary = directory / f".{pid}.tmp"
    temporary.write_text(json.dumps(health.snapshot(pid)))
    os.replace(temporary, directory / f"{pid}.json")


def fleet_answer(directory: Path, path: str, *, now: float | None = None) -> tuple[int, bytes] | None:
    """``/healthz`` or ``/readyz`` for every worker process of this run (their snapshot files).

    A file of a process that is gone is removed and ignored; one not rewritten for STALE_S is a hung
    process (not alive). No worker process yet (still booting): alive, not ready."""
    if path not in ("/healthz", "/readyz"):
        return None
    now = time.time() if now is None else now
    checks: dict[str, str] = {}
    for file in _snapshots(directory):
        pid = int(file.stem)
        if not _running(pid):
            file.unlink(missing_ok=True)
            continue
        try:
            age = now - file.stat().st_mtime
            snapshot = json.loads(file.read_text())
        except (OSError, ValueError):
            continue  # being replaced: the next probe reads it
        if age >= STALE_S:
            checks[f"worker {pid}"] = f"no snapshot for {age:.0f} s (hung?)"
            continue
        part = snapshot["alive" if path == "/healthz" else "ready"]
        for name, state in part.items():
            checks[f"worker {pid} {name}"] = state
    if not checks and path == "/readyz":
        checks["workers"] = "no worker process is up yet"
    return answer(checks, empty_ok=True)


def _snapshots(directory: Path) -> Iterable[Path]:
    try:
        return [p for p in directory.iterdir() if p.suffix == ".json" and p.stem.isdigit()]
    except FileNotFoundError:
        return []


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
