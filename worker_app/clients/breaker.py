"""A circuit breaker for an external service: stop calling into an outage, probe, resume (ARCHITECTURE.md
§7, §9). Telegram sends (:mod:`worker_app.telegram.sender`) and Remnawave calls
(:mod:`worker_app.clients.remnawave`) each go through one per process; the text below tells the
Telegram story, where it matters most.

Without it a dead or hanging Telegram costs every due row one of its five attempts (and a drain of
a 10,000-row broadcast walks the whole queue, one timeout per row), and every on-demand send its
Dramatiq retries. With it:

* **closed** — sends go out. ``failures`` consecutive transient failures (connection refused or
  dropped, timeout, 5xx, malformed reply; TELEGRAM_BREAKER_FAILURES), each within ``window_s`` of the
  previous one (TELEGRAM_BREAKER_WINDOW_S; sparse failures of single rows never add up), open it.
  Any answer from Telegram — a message accepted, a 4xx, even a 429 — resets the count: it proves
  Telegram is up.
* **open** — no send is attempted for ``cooldown_s`` (TELEGRAM_BREAKER_COOLDOWN_S); senders get a
  *deferral*, which is not an attempt: rows stay ``pending`` with ``attempts`` unchanged, on-demand
  sends are retried after the cooldown without spending a retry. A failure that arrives while it is
  open (a send that was already in flight) is a deferral too.
* **half-open** — when the cooldown ends (a timer moves it there, so its metric is right even in a
  process with nothing to send), exactly one send, the probe, is let through (the others are
  deferred briefly). Success closes the breaker; failure re-opens it with the cooldown doubled, up
  to ``max_cooldown_s`` (TELEGRAM_BREAKER_MAX_COOLDOWN_S). A probe that never reports (its thread
  died) is replaced after one cooldown.

How fast it opens: a refused or dropped connection fails at once, so a busy sender opens it in
milliseconds. A *hanging* Telegram fails only when the client gives up, hence ``sendMessage``'s own
short timeout (TELEGRAM_SEND_TIMEOUT_S, 3 s, see :class:`~worker_app.clients.telegram.TelegramClient`):
a drain's concurrent sends all time out together after it, so the breaker opens about 3 s into the
outage — inside the 5 s the product promises.

State is per worker process (each discovers an outage with its own ``failures`` sends), on purpose:
sharing it through Redis would make sending depend on Redis, which has its own outage scenario.
One WARNING when it opens, one INFO when it closes (failed probes log at INFO, once per cooldown).
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from worker_app.lazy import created_once

log = logging.getLogger(__name__)

CLOSED, HALF_OPEN, OPEN = "closed", "half_open", "open"
STATE_VALUES = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}
"""Value of ``cybervpn_breaker_state`` per state, ordered so that the max is the worst."""
_LIVE: weakref.WeakSet[CircuitBreaker] = weakref.WeakSet()
"""Every breaker of this process (the worker's heartbeat reports their states); under ``_LIVE_LOCK``:
clients create theirs lazily, on any thread, while the heartbeat reads."""
_LIVE_LOCK = threading.Lock()
PROBE_WAIT_S = 0.5
"""What a sender denied during a probe is told to wait: the probe answers within a send timeout."""


@dataclass(frozen=True)
class BreakerConfig:
    """Thresholds (TELEGRAM_BREAKER_* settings); the defaults are the settings' defaults."""

    failures: int = 5
    window_s: float = 10.0
    cooldown_s: float = 5.0
    max_cooldown_s: float = 30.0


class CircuitBreaker:
    """Closed → open → half-open → closed, for one process's calls to ``service``; thread-safe.

    Every change of state is exported as ``cybervpn_breaker_state{service}`` (0 closed, 1 half-open,
    2 open; worst of the live processes) and each opening counted in
    ``cybervpn_breaker_opens_total{service}``; ``on_state(state, opened)`` is told too.
    """

    def __init__(
        self,
        config: BreakerConfig | None = None,
        *,
        service: str = "telegram",
        clock: Callable[[], float] = time.monotonic,
        on_state: Callable[[str, bool], None] | None = None,
    ) -> None:
        self.config = config if config is not None else BreakerConfig()
        self.service = service
        self._on_state = on_state
        self._clock = clock
        self._lock = threading.Lock()
        self.state = CLOSED
        self._streak = 0
        self._last_failure = float("-inf")
        self._cooldown_s = self.config.cooldown_s
        self._open_until = 0.0
        self._probe_until = 0.0
        self._outage_started = 0.0
        with _LIVE_LOCK:
            _LIVE.add(self)

    @property
    def closed(self) -> bool:
        """True while sends go out normally (False: open, or the next send is a probe)."""
        return self.state == CLOSED

    def blocked_for(self) -> float:
        """Seconds until a send may be tried (0: closed, or a probe may go now)."""
        with self._lock:
            now = self._clock()
            if self.state == OPEN:
                return max(0.0, self._open_until - now)
            if self.state == HALF_OPEN and self._probe_until > now:
                return PROBE_WAIT_S
            return 0.0

    def allow(self) -> bool:
        """May a send go out now? Once the cooldown is over, True for one caller only: the probe."""
        with self._lock:
            now = self._clock()
            if self.state == CLOSED:
                return True
            if (self.state == OPEN and now < self._open_until) or self._probe_until > now:
                return False
            self._probe_until = now + self._cooldown_s
            self._set_state(HALF_OPEN)
            return True

    def record_success(self) -> None:
        """Telegram answered (whatever it said): close the breaker and forget past failures."""
        with self._lock:
            self._streak = 0
            if self.state == CLOSED:
                return
            outage_s = self._clock() - self._outage_started
            self._cooldown_s, self._probe_until = self.config.cooldown_s, 0.0
            self._set_state(CLOSED)
        log.info("%s circuit breaker closed: it answers again after %.1f s", self.service, outage_s)

    def record_failure(self, error: str) -> bool:
        """Count one transient failure; True when sending is now held back (the breaker is open)."""
        with self._lock:
            now = self._clock()
            if self.state == OPEN:
                return True
            if self.state == HALF_OPEN:
                self._cooldown_s = min(self._cooldown_s * 2, self.config.max_cooldown_s)
                self._open(now)
                cooldown_s = self._cooldown_s
            else:
                if now - self._last_failure > self.config.window_s:
                    self._streak = 0
                self._streak, self._last_failure = self._streak + 1, now
                if self._streak < self.config.failures:
                    return False
                self._outage_started = now
                self._open(now, first=True)
                log.warning(
                    "%s circuit breaker opened after %d consecutive failures (last: %s); "
                    "calls are held back for %g s, then one probe is let through",
                    self.service, self._streak, error, self._cooldown_s,
                )  # fmt: skip
                return True
        log.info(
            "%s still unavailable after a probe (%s); next probe in %g s", self.service, error, cooldown_s
        )
        return True

    def release_probe(self) -> None:
        """The send let through ended without an answer either way (an unexpected error)."""
        with self._lock:
            self._probe_until = 0.0

    def _open(self, now: float, *, first: bool = False) -> None:
        self._open_until, self._probe_until = now + self._cooldown_s, 0.0
        self._set_state(OPEN, opened=first)
        timer = threading.Timer(self._cooldown_s, self._cooldown_over)
        timer.daemon = True
        timer.start()

    def _cooldown_over(self) -> None:
        """Timer: the cooldown has ended, a probe may go (what :meth:`allow` would decide anyway)."""
        with self._lock:
            if self.state == OPEN and self._clock() >= self._open_until:
                self._set_state(HALF_OPEN)

    def _set_state(self, state: str, *, opened: bool = False) -> None:
        self.state = state
        gauges = _metrics()
        gauges["state"].labels(self.service).set(STATE_VALUES[state])
        if opened:
            gauges["opens"].labels(self.service).inc()
        if self._on_state is not None:
            self._on_state(state, opened)


def process_states() -> dict[str, str]:
    """This process's breakers' states by service, the worst where a service has several."""
    states: dict[str, str] = {}
    with _LIVE_LOCK:
        breakers = list(_LIVE)
    for breaker in breakers:
        known = states.get(breaker.service)
        if known is None or STATE_VALUES[breaker.state] > STATE_VALUES[known]:
            states[breaker.service] = breaker.state
    return states


@created_once
def _metrics() -> dict[str, Any]:
    import prometheus_client as prom

    return {
        "state": prom.Gauge(
            "cybervpn_breaker_state", "Circuit breaker per service: 0 closed, 1 half-open, 2 open.",
            ("service",), multiprocess_mode="livemax", registry=None,
        ),
        "opens": prom.Counter(
            "cybervpn_breaker_opens", "Circuit breaker openings per service.", ("service",), registry=None
        ),
    }  # fmt: skip
