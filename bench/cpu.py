"""CPU time (user + system) of processes, from /proc: the worker's whole process group, and the
RabbitMQ server's Erlang VM (``beam.smp``; each node's, summed, for a cluster on this machine),
sampled at the first and the N-th completion."""

from __future__ import annotations

import os
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    """Fields after the command name (field 3, ``state``, is index 0)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _cpu_s(fields: list[str]) -> float:
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime


def group_cpu_s(pgid: int) -> float:
    """CPU seconds used so far by the live processes of group ``pgid``."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None and int(fields[2]) == pgid:
                total += _cpu_s(fields)
    return total


def pid_cpu_s(pid: int | None) -> float | None:
    """CPU seconds used so far by ``pid`` (``None`` if unknown or gone)."""
    fields = _stat_fields(pid) if pid is not None else None
    return _cpu_s(fields) if fields is not None else None


def pids_cpu_s(pids: list[int] | None) -> float | None:
    """CPU seconds used so far by all of ``pids`` together (``None`` if any is unknown or gone)."""
    if not pids:
        return None
    times = [pid_cpu_s(pid) for pid in pids]
    return sum(t for t in times if t is not None) if None not in times else None


def beam_pids(pids: list[int] | None) -> list[int] | None:
    """``pids`` if every one is a live ``beam.smp`` on this machine, else ``None``."""
    if not pids:
        return None
    for pid in pids:
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() != "beam.smp":
                return None
        except OSError:
            return None
    return pids


def rabbitmq_pid() -> int | None:
    """The local RabbitMQ server's pid, if it runs on this machine."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "beam.smp":
                    return int(entry.name)
            except OSError:
                continue
    return None
