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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import redis
import requests

from bench import cpu
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
    half_seconds: float | None = None  # from the (N/2)-th to the N-th completion
    worker_cpu_s: float | None = None  # CPU of the worker process group between those completions
    rabbit_cpu_s: float | None = None  # CPU of the RabbitMQ server (every node of a cluster), same window
    detail: str = ""
    queue: str = ""  # how the bench queue was declared (quorum: its leader and members)

    def rate(self, messages: int) -> float | None:
        """Completions per second after the first one: (N - 1) / seconds."""
        if self.seconds is None or self.seconds <= 0:
            return None
        return (messages - 1) / self.seconds


def run_once(contender: Contender, config: Config, rabbit: Rabbit, round_no: int) -> RunResult:
    """Measure ``contender`` once on a vhost of its own; never leaves a process or vhost behind.
    ``rabbit`` is the server (classic) or cluster (quorum) the contender runs on."""
    run_id = f"{contender.tag}-r{round_no}-{uuid.uuid4().hex[:8]}"
    vhost = f"bench-{run_id}"
    key = f"bench:{run_id}"
    client = redis.Redis.from_url(config.redis_url)
    rabbit.create_vhost(vhost)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-metrics-") as metrics_dir:
            env = _environment(contender, config, rabbit.urls(vhost), key, metrics_dir)
            load_s = _preload(
                contender,
                config,
                rabbit,
                vhost=vhost,
                env=env,
                log_path=config.log_dir / f"{run_id}.load.log",
            )
            queue = _check_queue(contender, rabbit, vhost)
            result = _measure(
                contender,
                config,
                rabbit,
                env=env,
                client=client,
                key=key,
                load_s=load_s,
                log_path=config.log_dir / f"{run_id}.worker.log",
            )
            return replace(result, queue=queue)
    finally:
        client.delete(*(f"{key}:{name}" for name in ("count", "first", "mid", "last")))
        client.close()
        rabbit.delete_vhost(vhost)


def _environment(
    contender: Contender, config: Config, amqp_urls: list[str], key: str, metrics_dir: str
) -> dict[str, str]:
    """The worker's and loader's environment. On a cluster, ours gets every node in
    ``RABBITMQ_URL`` (comma-separated, as deployed) and bare Dramatiq the same nodes in
    ``BENCH_RABBITMQ_URL`` in Dramatiq's own ``;`` form; both connect to the first node that answers
    (node 1). With one node both are that node's URL."""
    env = dict(os.environ)
    env.update(
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
        BENCH_RABBITMQ_URL=";".join(amqp_urls),
        BENCH_REDIS_URL=config.redis_url,
        BENCH_KEY=key,
        BENCH_TARGET=str(config.messages),
        RABBITMQ_URL=",".join(amqp_urls),
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


def _check_queue(contender: Contender, rabbit: Rabbit, vhost: str) -> str:
    """For a quorum contender: the pre-loaded queue must be a quorum queue with a member on every
    node of the cluster (members are fixed when it is declared). Returns its leader and members."""
    if contender.queue_type == "classic":
        return ""
    try:
        info = rabbit.queue_info(vhost, QUEUE)
    except requests.RequestException as e:
        raise BenchError(f"could not read {QUEUE!r} from the management API: {e}") from None
    members = sorted(str(m) for m in info.get("members") or [])
    if info.get("type") != contender.queue_type or len(members) != rabbit.nodes:
        raise BenchError(
            f"{QUEUE!r} is {info.get('type')!r} with members {members}: expected "
            f"{contender.queue_type!r} on all {rabbit.nodes} nodes"
        )
    return f"{info.get('type')}, leader {info.get('leader')}, {len(members)} members"


def _measure(
    contender: Contender,
    config: Config,
    rabbit: Rabbit,
    *,
    env: dict[str, str],
    client: redis.Redis,
    key: str,
    load_s: float,
    log_path: Path,
) -> RunResult:
    launched = time.time()
    rabbit_pids = _server_pids(rabbit)
    with process_group(contender.argv, env, log_path) as proc:
        deadline = time.monotonic() + config.timeout_s
        waiting = _Waiter(client, proc, deadline, log_path)
        if not waiting.until(f"{key}:first"):
            return _timed_out(contender, config, client, key, load_s)
        cpu_first = (cpu.group_cpu_s(proc.pid), cpu.pids_cpu_s(rabbit_pids))
        if not waiting.until(f"{key}:last"):
            return _timed_out(contender, config, client, key, load_s)
        cpu_last = (cpu.group_cpu_s(proc.pid), cpu.pids_cpu_s(rabbit_pids))
    stamps = {name: float(client.get(f"{key}:{name}") or launched) for name in ("first", "mid", "last")}
    return RunResult(
        contender,
        "ok",
        seconds=stamps["last"] - stamps["first"],
        half_seconds=stamps["last"] - stamps["mid"],
        startup_s=stamps["first"] - launched,
        load_s=load_s,
        completed=int(client.get(f"{key}:count") or 0),
        worker_cpu_s=cpu_last[0] - cpu_first[0],
        rabbit_cpu_s=_delta(cpu_first[1], cpu_last[1]),
    )


def _server_pids(rabbit: Rabbit) -> list[int] | None:
    """The Erlang VM of every node (from the management API), when they run on this machine; for a
    single server the API not answering falls back to the first ``beam.smp`` found."""
    pids = cpu.beam_pids(rabbit.server_pids())
    if pids is None and rabbit.nodes == 1:
        pid = cpu.rabbitmq_pid()
        pids = [pid] if pid is not None else None
    return pids


class _Waiter:
    """Polls Redis for a key while watching the worker's main process and the deadline."""

    def __init__(
        self, client: redis.Redis, proc: subprocess.Popen[bytes], deadline: float, log: Path
    ) -> None:
        self.client, self.proc, self.deadline, self.log = client, proc, deadline, log

    def until(self, name: str) -> bool:
        """True once ``name`` exists; False at the deadline; BenchError if the worker exits."""
        while self.client.get(name) is None:
            if self.proc.poll() is not None:
                raise BenchError(f"worker exited with code {self.proc.returncode}: {_tail(self.log)}")
            if time.monotonic() > self.deadline:
                return False
            time.sleep(POLL_S)
        return True


def _timed_out(
    contender: Contender, config: Config, client: redis.Redis, key: str, load_s: float
) -> RunResult:
    completed = int(client.get(f"{key}:count") or 0)
    return RunResult(
        contender,
        "timeout",
        load_s=load_s,
        completed=completed,
        detail=f"{completed}/{config.messages} done after {config.timeout_s:.0f}s",
    )


def _delta(before: float | None, after: float | None) -> float | None:
    return after - before if before is not None and after is not None else None


@contextmanager
def process_group(
    argv: tuple[str, ...], env: dict[str, str], log_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """Start the command in a process group of its own, output to ``log_path``; on exit
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
    """Stop every process of ``proc``'s group: SIGTERM to the leader (Dramatiq's and Celery's main
    processes pass it on to their children once), then SIGKILL to the whole group."""
    with suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
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
