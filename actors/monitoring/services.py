"""``check_external_services`` (every 60 s): is each dependency up, and how fast does it answer?

Probes, each with its own timeout (SERVICE_PROBE_TIMEOUT_S), run side by side:

* ``remnawave`` — the panel's authenticated ``/api/system/health``;
* ``postgresql`` — ``SELECT 1``;
* ``redis`` — ``PING``;
* ``telegram`` — the Bot API's ``getMe``;
* ``rabbitmq`` — an AMQP connection opened and closed.

Each service's status is in ``cybervpn:health:services:{name}`` (JSON: status ``up``/``down``,
latency_ms, error, failures — consecutive —, since, checked_at; a change is published on
``cybervpn:events`` as ``service_status``: service, old, new, error, at) and in the gauges
``cybervpn_service_up{service}`` and ``cybervpn_service_latency_seconds{service}``.
SERVICE_DOWN_AFTER (3) consecutive failures raise one critical alert
(``monitoring.service_down.<name>``, open until the service answers again); the first success
after it, one resolved message. Redis being
down is one of the things this job must report, so the failure counts are also kept in the process:
with Redis unreachable the job still probes, exports, logs and alerts, and never crashes.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from typing import Any

import dramatiq
import redis

from worker_app.alerts import AdminAlerts
from worker_app.events import new_event, publish
from worker_app.lazy import created_once
from worker_app.open_alerts import OpenAlert, OpenAlerts
from worker_app.redaction import redact
from worker_app.redis_client import key
from worker_app.runtime import Runtime, get_runtime

QUEUE = "monitoring"
log = logging.getLogger(__name__)

SERVICES = ("remnawave", "postgresql", "redis", "telegram", "rabbitmq")
"""What :func:`default_probes` probes, in its order (the dashboard lists them so)."""

Probe = Callable[[], object]
"""Raises when the service is down; what it returns is ignored."""


def service_key(name: str) -> str:
    return key("health", "services", name)


@dataclass(frozen=True)
class ServiceState:
    """One service's last probe and its run of failures."""

    name: str
    status: str
    latency_ms: float
    error: str | None
    failures: int
    since: float
    checked_at: float
    alerted: bool = False


def probe_all(probes: Mapping[str, Probe], timeout_s: float) -> dict[str, tuple[float, str | None]]:
    """Run every probe at once: ``{name: (latency in ms, error or None)}``; a probe still running
    after ``timeout_s`` (its own timeout failed to fire) counts as down."""
    pool = ThreadPoolExecutor(max_workers=len(probes) or 1, thread_name_prefix="probe")
    futures = {name: pool.submit(_timed, probe) for name, probe in probes.items()}
    deadline = time.monotonic() + timeout_s + 1
    results: dict[str, tuple[float, str | None]] = {}
    for name, future in futures.items():
        try:
            results[name] = future.result(timeout=max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            results[name] = ((timeout_s + 1) * 1000, f"no answer within {timeout_s:g} s")
    pool.shutdown(wait=False)  # a hung probe ends on its own timeout; the run does not wait for it
    return results


def _timed(probe: Probe) -> tuple[float, str | None]:
    started = time.monotonic()
    try:
        probe()
    except Exception as e:
        return (time.monotonic() - started) * 1000, redact(f"{type(e).__name__}: {e}")[:300]
    return (time.monotonic() - started) * 1000, None


def next_state(
    prev: ServiceState | None, name: str, latency_ms: float, error: str | None, now: float
) -> ServiceState:
    """The service's state after one probe."""
    status = "down" if error else "up"
    failures = (prev.failures + 1 if prev else 1) if error else 0
    since = prev.since if prev is not None and prev.status == status else now
    alerted = prev.alerted if prev is not None and error else False
    return ServiceState(name, status, round(latency_ms, 1), error, failures, since, now, alerted)


class ServiceMonitor:
    """Probes, records and alerts; keeps the states in the process too (Redis may be the one down)."""

    def __init__(self, redis_client: redis.Redis, alerts: AdminAlerts, *, down_after: int) -> None:
        self.redis = redis_client
        self.alerts = alerts
        self.down_after = down_after
        self.local: dict[str, ServiceState] = {}

    def run(self, probes: Mapping[str, Probe], timeout_s: float, now: float) -> dict[str, ServiceState]:
        results = probe_all(probes, timeout_s)
        previous = self._load(list(results))
        states: dict[str, ServiceState] = {}
        for name, (latency_ms, error) in results.items():
            state = next_state(previous.get(name), name, latency_ms, error, now)
            states[name] = self._alert(previous.get(name), state)
            _export(states[name])
        self.local.update(states)
        self._store(states, previous)
        return states

    def _alert(self, prev: ServiceState | None, state: ServiceState) -> ServiceState:
        if state.status == "down" and state.failures >= self.down_after and not state.alerted:
            self.alerts.alert(f"monitoring.service_down.{state.name}", _down_text(state), severity="critical")
            return replace(state, alerted=True)
        if state.status == "up" and prev is not None and prev.alerted:
            down_s = state.checked_at - prev.since
            self.alerts.alert(f"monitoring.service_up.{state.name}",
                              f"{state.name} is back after {down_s:.0f} s down ({state.latency_ms:.0f} ms)",
                              severity="info")  # fmt: skip
        return state

    def _load(self, names: list[str]) -> dict[str, ServiceState]:
        try:
            raw = self.redis.mget([service_key(n) for n in names])
        except redis.RedisError:
            return dict(self.local)
        stored = {n: ServiceState(**json.loads(r)) for n, r in zip(names, raw, strict=True) if r}
        return {**self.local, **stored}

    def _store(self, states: dict[str, ServiceState], previous: Mapping[str, ServiceState]) -> None:
        """The states, their changes as ``service_status`` events, and the open alerts."""
        olds = {name: prev.status for name, prev in previous.items()}
        changes = [
            new_event("service_status", s.checked_at, service=s.name, old=olds.get(s.name), new=s.status,
                      error=s.error)
            for s in states.values() if olds.get(s.name) != s.status
        ]  # fmt: skip
        try:
            with self.redis.pipeline(transaction=False) as pipe:
                for state in states.values():
                    pipe.set(service_key(state.name), json.dumps(asdict(state)), ex=86_400)
                publish(pipe, changes)
                pipe.execute()
            open_alerts = OpenAlerts(self.redis)
            for state in states.values():
                alert_key = f"monitoring.service_down.{state.name}"
                if state.alerted:
                    open_alerts.open(OpenAlert(alert_key, "critical", _down_text(state), state.since,
                                               state.checked_at, "check_external_services"))  # fmt: skip
                elif state.status == "up":
                    open_alerts.close(alert_key, state.checked_at)
        except redis.RedisError as e:
            log.warning("service states not written: Redis unavailable (%s); kept in this process", e)


def _down_text(state: ServiceState) -> str:
    return f"{state.name} is DOWN: {state.failures} probes failed in a row; last: {state.error}"


def _export(state: ServiceState) -> None:
    gauges = _gauges()
    gauges["up"].labels(state.name).set(1 if state.status == "up" else 0)
    gauges["latency"].labels(state.name).set(state.latency_ms / 1000)


@created_once
def _gauges() -> dict[str, Any]:
    import prometheus_client as prom

    return {
        "up": prom.Gauge("cybervpn_service_up", "1 when the last probe of a dependency succeeded.",
                         ("service",), multiprocess_mode="mostrecent", registry=None),
        "latency": prom.Gauge("cybervpn_service_latency_seconds", "The last probe's latency per dependency.",
                              ("service",), multiprocess_mode="mostrecent", registry=None),
    }  # fmt: skip


def default_probes(runtime: Runtime, timeout_s: float) -> dict[str, Probe]:
    """The five probes of the module docstring, on the process's clients."""
    from sqlalchemy import text

    def postgresql() -> None:
        with runtime.database.engine.connect() as conn:
            conn.execute(text(f"SET statement_timeout = {int(timeout_s * 1000)}"))
            conn.execute(text("SELECT 1"))

    def rabbitmq() -> None:
        import pika

        params = pika.URLParameters(runtime.settings.rabbitmq_url.get_secret_value())
        params.socket_timeout = params.blocked_connection_timeout = timeout_s
        params.connection_attempts, params.retry_delay = 1, 0
        pika.BlockingConnection(params).close()

    probes: dict[str, Probe] = {
        "remnawave": runtime.remnawave.system_health,
        "postgresql": postgresql,
        "redis": runtime.redis.ping,
        "telegram": runtime.telegram.get_me,
        "rabbitmq": rabbitmq,
    }
    return {name: probes[name] for name in SERVICES}


def monitor(runtime: Runtime) -> ServiceMonitor:
    """This process's monitor (``runtime.service(monitor)``), keeping states across runs."""
    return ServiceMonitor(runtime.redis, runtime.alerts, down_after=runtime.settings.service_down_after)


@dramatiq.actor(queue_name=QUEUE, store_results=True)
def check_external_services() -> dict[str, Any]:
    """Probe Remnawave, PostgreSQL, Redis, Telegram and RabbitMQ (every 60 s); record, export and
    alert after SERVICE_DOWN_AFTER failures in a row, and when the service is back."""
    runtime = get_runtime()
    timeout_s = runtime.settings.service_probe_timeout_s
    states = runtime.service(monitor).run(default_probes(runtime, timeout_s), timeout_s, time.time())
    summary = {"job": "check_external_services", "services": {n: s.status for n, s in states.items()},
               "latency_ms": {n: s.latency_ms for n, s in states.items()}}  # fmt: skip
    log.info("monitoring job done: check_external_services %s", summary["services"], extra=summary)
    return summary
