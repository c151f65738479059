"""One measured run of one contender: fresh vhost → pre-load N messages → start the workers →
wait for the N-th completion (or the timeout) → stop every worker process → delete the vhost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import redis

from bench.contenders import Contender
from bench.rabbit import Rabbit

ROOT = Path(__file__).resolve().parent.parent
QUEUE = "bench"
POLL_S = 0.02
STOP_GRACE_S = 15.0
Status = Literal["ok", "timeout", "error"]


class BenchError(Exception):
    """A run could not be carried out (not a slow contender: a broken one)."""


@dataclass(frozen=True)
class Config:
    """Settings shared by every run."""

    messages: int
    timeout_s: float
    redis_url: str
    log_dir: Path


@dataclass(frozen=True)
class RunResult:
    """What one run measured. ``seconds`` spans the first to the N-th completion."""

    contender: Contender
    status: Status
    seconds: float | None = None
    startup_s: float | None = None
    load_s: float | None = None
    completed: int = 0
    detail: str = ""

    def rate(self, messages: int) -> float | None:
        """Completions per second after the first one: (N - 1) / seconds."""
        if self.seconds is None or self.seconds <= 0:
            return None
        return (messages - 1) / self.seconds


def run_once(contender: Contender, config: Config, rabbit: Rabbit, round_no: int) -> RunResult:
    """Measure ``contender`` once on a vhost of its own; never leaves a process or vhost behind."""
    run_id = f"{contender.key}-r{round_no}-{uuid.uuid4().hex[:8]}"
    vhost = f"bench-{run_id}"
    key = f"bench:{run_id}"
    client = redis.Redis.from_url(config.redis_url)
    rabbit.create_vhost(vhost)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-metrics-") as metrics_dir:
            env = _environment(contender, config, rabbit.url(vhost), key, metrics_dir)
            load_s = _preload(
                contender,
                config,
                rabbit,
                vhost=vhost,
                env=env,
                log_path=config.log_dir / f"{run_id}.load.log",
            )
            return _measure(
                contender,
                config,
                env=env,
                client=client,
                key=key,
                load_s=load_s,
                log_path=config.log_dir / f"{run_id}.worker.log",
            )
    finally:
        client.delete(f"{key}:count", f"{key}:first", f"{key}:last")
        client.close()
        rabbit.delete_vhost(vhost)


def _environment(
    contender: Contender, config: Config, amqp_url: str, key: str, metrics_dir: str
) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
        BENCH_RABBITMQ_URL=amqp_url,
        BENCH_REDIS_URL=config.redis_url,
        BENCH_KEY=key,
        BENCH_TARGET=str(config.messages),
        RABBITMQ_URL=amqp_url,
        REDIS_URL=config.redis_url,
        METRICS_DIR=metrics_dir,
    )
    env.update(contender.env)
    return env


def _preload(
    contender: Contender, config: Config, rabbit: Rabbit, *, vhost: str, env: dict[str, str], log_path: Path
) -> float:
    """Publish N messages with the contender's own producer; check that exactly N are queued."""
    argv = (sys.executable, "-m", "bench.load", contender.app, str(config.messages))
    started = time.monotonic()
    with log_path.open("wb") as log:
        try:
            done = subprocess.run(
                argv, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                timeout=config.timeout_s, check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            raise BenchError(f"pre-loading took over {config.timeout_s:.0f}s (see {log_path})") from None
    if done.returncode != 0:
        raise BenchError(f"pre-loading failed with exit code {done.returncode}: {_tail(log_path)}")
    load_s = time.monotonic() - started
    depth = rabbit.queue_depth(vhost, QUEUE)
    if depth != config.messages:
        raise BenchError(f"expected {config.messages} messages in {QUEUE!r} after pre-loading, found {depth}")
    return load_s


def _measure(
    contender: Contender,
    config: Config,
    *,
    env: dict[str, str],
    client: redis.Redis,
    key: str,
    load_s: float,
    log_path: Path,
) -> RunResult:
    launched = time.time()
    with _workers(contender.argv, env, log_path) as proc:
        deadline = time.monotonic() + config.timeout_s
        while client.get(f"{key}:last") is None:
            if proc.poll() is not None:
                raise BenchError(f"worker exited with code {proc.returncode}: {_tail(log_path)}")
            if time.monotonic() > deadline:
                completed = int(client.get(f"{key}:count") or 0)
                return RunResult(
                    contender,
                    "timeout",
                    load_s=load_s,
                    completed=completed,
                    detail=f"{completed}/{config.messages} done after {config.timeout_s:.0f}s",
                )
            time.sleep(POLL_S)
    first = float(client.get(f"{key}:first") or launched)
    last = float(client.get(f"{key}:last") or launched)
    completed = int(client.get(f"{key}:count") or 0)
    return RunResult(
        contender, "ok", seconds=last - first, startup_s=first - launched, load_s=load_s, completed=completed
    )


@contextmanager
def _workers(argv: tuple[str, ...], env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Start the worker command in a process group of its own, output to ``log_path``; on exit
    stop the whole group (SIGTERM, then SIGKILL after a grace period), whatever happened."""
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            argv, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
    try:
        yield proc
    finally:
        stop_group(proc)


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """Stop every process of ``proc``'s group (its leader is ``proc``)."""
    _signal_group(proc.pid, signal.SIGTERM)
    with suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=STOP_GRACE_S)
    _signal_group(proc.pid, signal.SIGKILL)  # stragglers: pool children, forks
    proc.wait()


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return f"(no log at {path})"
    return " | ".join(text[-lines:]) + f" (log: {path})"
