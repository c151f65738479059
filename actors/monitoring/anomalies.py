"""``check_anomalies`` (every 5 min; ``check_server_health`` also judges the rules after each run):
the fleet's vital signs against thresholds, each breach alerted once and its end once (PRD 8.3).

Rules (thresholds are ``ANOMALY_*`` settings):

* ``node_offline`` (critical, ``anomaly.node_offline.<uuid>``): a node has been ``offline`` longer
  than ANOMALY_NODE_OFFLINE_S — the escalation of ``check_server_health``'s immediate alert;
* ``error_rate`` (warning, ``anomaly.error_rate``): failed / finished message attempts over the last
  ANOMALY_ERROR_RATE_WINDOW_S above ANOMALY_ERROR_RATE_PCT, judged from
  ANOMALY_ERROR_RATE_MIN_TASKS attempts on;
* ``queue_depth`` (warning, ``anomaly.queue_depth.<queue>``): a domain queue holds more than
  ANOMALY_QUEUE_DEPTH_MAX ready messages;
* ``payment_failure`` (critical, ``anomaly.payment_failure``): failed / (completed + failed)
  payments over the last ANOMALY_PAYMENT_WINDOW_S above ANOMALY_PAYMENT_FAILURE_PCT, judged from
  ANOMALY_PAYMENT_MIN_COUNT payments on;
* ``worker_memory`` (warning, ``anomaly.worker_memory.<host:pid>``): a worker uses more than
  ANOMALY_WORKER_MEMORY_PCT of its memory limit (its heartbeat's figures).

**Dedup.** A breach is an *open alert* (:mod:`worker_app.open_alerts`): the run that opens it sends
one message; runs that find it still breached only refresh it; the first run that finds it cleared
closes it and sends one "resolved" message with how long it lasted. A rule whose input cannot be
read this run (RabbitMQ's management API down, Redis down) leaves its open alerts as they are: an
unknown is not a recovery.

Inputs: node states from ``check_server_health``'s keys; the worker heartbeats' per-minute counts
``tasks`` (``<queue>:processed`` / ``<queue>:failed``) and ``payments`` (``completed`` / ``failed``,
added by ``process_payment_completion`` and ``verify_pending_payments``); queue depths as
``worker-app queues`` reads them; worker memory from the heartbeats.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import dramatiq
import redis

from actors.monitoring.health import QUEUE, duration_text, stored_states
from actors.monitoring.node_state import OFFLINE, NodeState
from worker_app.alerts import AdminAlerts
from worker_app.config import Settings
from worker_app.lazy import created_once
from worker_app.open_alerts import OpenAlert, OpenAlerts
from worker_app.policies import Severity
from worker_app.rolling import RollingCounts
from worker_app.runtime import Runtime, get_runtime
from worker_app.workers import WorkerInfo, alive_workers

log = logging.getLogger(__name__)
PREFIX = "anomaly."


@dataclass(frozen=True)
class Thresholds:
    """The ANOMALY_* settings."""

    node_offline_s: float = 300
    error_rate_pct: float = 5.0
    error_rate_window_s: int = 900
    error_rate_min_tasks: int = 20
    queue_depth_max: int = 500
    payment_failure_pct: float = 10.0
    payment_window_s: int = 3600
    payment_min_count: int = 10
    worker_memory_pct: float = 80.0

    @classmethod
    def from_settings(cls, s: Settings) -> Thresholds:
        return cls(
            s.anomaly_node_offline_s, s.anomaly_error_rate_pct, s.anomaly_error_rate_window_s,
            s.anomaly_error_rate_min_tasks, s.anomaly_queue_depth_max, s.anomaly_payment_failure_pct,
            s.anomaly_payment_window_s, s.anomaly_payment_min_count, s.anomaly_worker_memory_pct,
        )  # fmt: skip


@dataclass(frozen=True)
class Finding:
    """A rule breached now."""

    key: str
    severity: Severity
    title: str


@dataclass
class Readings:
    """What the rules judge; ``None``: could not be read this run (the rule is not judged)."""

    nodes: Sequence[NodeState] | None = None
    tasks: dict[str, int] | None = None
    queues: dict[str, int] | None = None
    """Ready messages per domain queue."""
    payments: dict[str, int] | None = None
    workers: Sequence[WorkerInfo] | None = None
    unread: dict[str, Exception] = field(default_factory=dict)
    """Why each input left ``None`` was not read."""


def node_offline(r: Readings, t: Thresholds, now: float) -> list[Finding] | None:
    if r.nodes is None:
        return None
    return [
        Finding(f"{PREFIX}node_offline.{n.uuid}", "critical",
                f"node {n.name} has been OFFLINE for {duration_text(now - n.since)} (uuid {n.uuid})")
        for n in r.nodes if n.status == OFFLINE and now - n.since > t.node_offline_s
    ]  # fmt: skip


def error_rate(r: Readings, t: Thresholds, now: float) -> list[Finding] | None:
    if r.tasks is None:
        return None
    by_queue: dict[str, dict[str, int]] = {}
    for name, n in r.tasks.items():
        queue, _, what = name.rpartition(":")
        counts = by_queue.setdefault(queue, {"processed": 0, "failed": 0})
        counts[what] = counts.get(what, 0) + n
    processed = sum(c["processed"] for c in by_queue.values())
    failed = sum(c["failed"] for c in by_queue.values())
    rate = _breached_rate(failed, processed, pct=t.error_rate_pct, min_count=t.error_rate_min_tasks)
    if rate is None:
        return []
    worst = sorted(
        ((c["failed"], c["processed"], q) for q, c in by_queue.items() if c["failed"]), reverse=True
    )
    where = ", ".join(f"{q} {bad}/{done}" for bad, done, q in worst[:3])
    minutes = t.error_rate_window_s // 60
    return [Finding(f"{PREFIX}error_rate", "warning",
                    f"task error rate {rate:.1f}% over the last {minutes} min "
                    f"({failed} of {processed} attempts failed; {where})")]  # fmt: skip


def _breached_rate(failed: int, total: int, *, pct: float, min_count: int) -> float | None:
    """``failed`` as a percentage of ``total`` when it is above ``pct`` and ``total`` is at least
    ``min_count`` (fewer is noise); else None."""
    if total < min_count or 100 * failed / total <= pct:
        return None
    return 100 * failed / total


def queue_depth(r: Readings, t: Thresholds, now: float) -> list[Finding] | None:
    if r.queues is None:
        return None
    return [
        Finding(f"{PREFIX}queue_depth.{queue}", "warning",
                f"queue {queue} holds {ready} messages waiting (more than {t.queue_depth_max})")
        for queue, ready in sorted(r.queues.items()) if ready > t.queue_depth_max
    ]  # fmt: skip


def payment_failure(r: Readings, t: Thresholds, now: float) -> list[Finding] | None:
    if r.payments is None:
        return None
    failed, completed = r.payments.get("failed", 0), r.payments.get("completed", 0)
    total = failed + completed
    rate = _breached_rate(failed, total, pct=t.payment_failure_pct, min_count=t.payment_min_count)
    if rate is None:
        return []
    minutes = t.payment_window_s // 60
    return [Finding(f"{PREFIX}payment_failure", "critical",
                    f"payment failure rate {rate:.1f}% over the last {minutes} min "
                    f"({failed} of {total} payments failed)")]  # fmt: skip


def worker_memory(r: Readings, t: Thresholds, now: float) -> list[Finding] | None:
    if r.workers is None:
        return None
    return [
        Finding(f"{PREFIX}worker_memory.{w.name}", "warning",
                f"worker {w.name} ({','.join(w.queues)}) uses {w.memory_pct:.0f}% of its memory limit "
                f"({w.memory_used // 2**20} of {w.memory_limit // 2**20} MB, {w.memory_source})")
        for w in r.workers if w.memory_pct is not None and w.memory_pct > t.worker_memory_pct
    ]  # fmt: skip


Rule = Callable[[Readings, Thresholds, float], "list[Finding] | None"]
RULE_FUNCTIONS: dict[str, Rule] = {
    "node_offline": node_offline, "error_rate": error_rate, "queue_depth": queue_depth,
    "payment_failure": payment_failure, "worker_memory": worker_memory,
}  # fmt: skip


@dataclass
class AnomalyReport:
    breached: dict[str, int] = field(default_factory=dict)
    opened: list[str] = field(default_factory=list)
    resolved: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    redis_down: bool = False

    def summary(self) -> dict[str, Any]:
        return {"breached": self.breached, "opened": self.opened, "resolved": self.resolved,
                "unknown": self.unknown, "redis_down": self.redis_down}  # fmt: skip


def check(
    readings: Readings, open_alerts: OpenAlerts, alerts: AdminAlerts, thresholds: Thresholds, *, now: float
) -> AnomalyReport:
    """Judge every rule and reconcile its open alerts: open (one message) what breaches anew,
    close (one "resolved" message) what no longer does; a rule not judged keeps its alerts."""
    report = AnomalyReport()
    try:
        for rule, judge in RULE_FUNCTIONS.items():
            findings = judge(readings, thresholds, now)
            if findings is None:
                report.unknown.append(rule)
                continue
            report.breached[rule] = len(findings)
            _reconcile(rule, findings, open_alerts, alerts, now=now, report=report)
    except redis.RedisError as e:
        log.warning("anomalies not judged: Redis unavailable (%s); the next run judges them", e)
        report.redis_down = True
    _export(report)
    return report


def _reconcile(
    rule: str, findings: list[Finding], open_alerts: OpenAlerts, alerts: AdminAlerts, *, now: float,
    report: AnomalyReport,
) -> None:  # fmt: skip
    for finding in findings:
        alert = OpenAlert(finding.key, finding.severity, finding.title, now, now, "check_anomalies")
        if open_alerts.open(alert):
            report.opened.append(finding.key)
            alerts.alert(finding.key, f"ANOMALY: {finding.title}", severity=finding.severity)
    prefix = f"{PREFIX}{rule}"
    stale = {k for k in open_alerts.keys(prefix) if k == prefix or k.startswith(prefix + ".")}
    for closed in open_alerts.close_all(stale - {f.key for f in findings}, now):
        report.resolved.append(closed.key)
        alerts.alert(f"{closed.key}.resolved",
                     f"RESOLVED after {duration_text(now - closed.first_seen)}: {closed.title}",
                     severity="info")  # fmt: skip


def read(redis_client: redis.Redis, settings: Settings, thresholds: Thresholds, now: float) -> Readings:
    """Every rule's input; one that cannot be read is left ``None``, its error in ``unread``."""
    from worker_app.policies import DOMAINS
    from worker_app.queues import queue_report

    sources: dict[str, Callable[[], Any]] = {
        "nodes": lambda: list(stored_states(redis_client).values()),
        "tasks": lambda: RollingCounts(redis_client, "tasks").window(thresholds.error_rate_window_s, now),
        "queues": lambda: {q.queue: q.ready for q in queue_report(settings, list(DOMAINS)).queues},
        "payments": lambda: RollingCounts(redis_client, "payments").window(thresholds.payment_window_s, now),
        "workers": lambda: alive_workers(redis_client, now),
    }
    readings = Readings()
    for name, source in sources.items():
        try:
            setattr(readings, name, source())
        except Exception as e:  # one unreadable input leaves only its rule unjudged
            readings.unread[name] = e
    return readings


def _export(report: AnomalyReport) -> None:
    gauge = _gauge()
    for rule, n in report.breached.items():
        gauge.labels(rule).set(n)


@created_once
def _gauge() -> Any:
    import prometheus_client as prom

    return prom.Gauge(
        "cybervpn_anomalies", "Breaches per anomaly rule at its last judgement (0: none).",
        ("rule",), multiprocess_mode="mostrecent", registry=None,
    )  # fmt: skip


def judge_anomalies(runtime: Runtime) -> dict[str, Any]:
    """One judgement of every rule on ``runtime``'s clients (logged); its summary."""
    thresholds = Thresholds.from_settings(runtime.settings)
    started, now = time.monotonic(), time.time()
    readings = read(runtime.redis, runtime.settings, thresholds, now)
    redis_error = next((e for e in readings.unread.values() if isinstance(e, redis.RedisError)), None)
    if redis_error is not None:  # no rule can be reconciled without Redis: one line, not one per input
        log.warning("anomalies not judged: Redis unavailable (%s); the next run judges them", redis_error)
        report = AnomalyReport(unknown=list(RULE_FUNCTIONS), redis_down=True)
    else:
        if readings.unread:
            log.warning("anomaly rules not judged this run (their open alerts kept): %s", "; ".join(
                f"{name}: {type(e).__name__}: {e}" for name, e in readings.unread.items()))  # fmt: skip
        report = check(readings, OpenAlerts(runtime.redis), runtime.alerts, thresholds, now=now)
    summary = {
        "job": "check_anomalies",
        **report.summary(),
        "duration_s": round(time.monotonic() - started, 3),
    }
    log.info("monitoring job done: check_anomalies %s", summary["breached"], extra=summary)
    return summary


@dramatiq.actor(queue_name=QUEUE, store_results=True)
def check_anomalies() -> dict[str, Any]:
    """Judge the anomaly rules (every 5 min; ``check_server_health`` also judges them after each
    run): one alert when a rule breaches, none while it stays breached, one resolved message when it
    clears."""
    return judge_anomalies(get_runtime())
