"""Open alerts: conditions that are true *now* (a node offline, a queue too deep), each opened once
and closed once.

An open alert has a **key** naming the condition (``anomaly.queue_depth.payments``,
``monitoring.node_offline.<uuid>``), a severity, a title, a first-seen time and the time it was last
confirmed. :meth:`OpenAlerts.open` records it and says whether *this call* opened it (Redis
``HSETNX``: two runs at once open it once); :meth:`OpenAlerts.close` removes it and returns what it
was only to the call that removed it. So whoever raises the message on open and the "resolved"
message on close sends each exactly once, however many runs see the condition.

Every open and close is also published on ``cybervpn:events`` (``alert_opened`` /
``alert_resolved``). ``worker-app alerts``, ``GET /api/v1/alerts/open`` and the dashboard's Alerts
page list them.

Redis key: ``cybervpn:alerts:open`` (hash: key → JSON ``{key, severity, title, first_seen,
last_seen, source}``; no TTL — an alert is open until its condition clears or its source
closes it).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import redis

from worker_app.events import new_event, publish
from worker_app.policies import Severity
from worker_app.redis_client import key

OPEN_KEY = key("alerts", "open")


@dataclass(frozen=True)
class OpenAlert:
    key: str
    severity: Severity
    title: str
    first_seen: float
    last_seen: float
    source: str
    """What opened it (``check_anomalies``, ``check_server_health``, …)."""

    @classmethod
    def from_json(cls, raw: str | bytes) -> OpenAlert:
        return cls(**json.loads(raw))


class OpenAlerts:
    """The open alerts in Redis; every method raises :class:`redis.RedisError` when Redis is down."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def open(self, alert: OpenAlert) -> bool:
        """Record ``alert``; whether this call opened it (``False``: it was open already, and only
        its ``last_seen`` and title are refreshed, its first-seen time kept)."""
        raw = json.dumps(asdict(alert))
        if self.redis.hsetnx(OPEN_KEY, alert.key, raw):
            publish(self.redis, [new_event("alert_opened", alert.first_seen, **_public(alert))])
            return True
        current = self.get(alert.key)
        if current is not None:
            refreshed = OpenAlert(**{**asdict(current), "last_seen": alert.last_seen, "title": alert.title})
            self.redis.hset(OPEN_KEY, alert.key, json.dumps(asdict(refreshed)))
        return False

    def close(self, alert_key: str, at: float) -> OpenAlert | None:
        """Remove the alert ``alert_key``: what it was, to the one call that removed it; else None."""
        current = self.get(alert_key)
        if current is None or not self.redis.hdel(OPEN_KEY, alert_key):
            return None
        publish(
            self.redis, [new_event("alert_resolved", at, **_public(current), open_s=at - current.first_seen)]
        )
        return current

    def get(self, alert_key: str) -> OpenAlert | None:
        raw = self.redis.hget(OPEN_KEY, alert_key)
        return OpenAlert.from_json(raw) if raw else None

    def keys(self, prefix: str) -> set[str]:
        """The open alerts' keys that start with ``prefix``."""
        return {str(k) for k in self.redis.hkeys(OPEN_KEY) if str(k).startswith(prefix)}

    def all(self) -> list[OpenAlert]:
        """Every open alert, the oldest first."""
        found = [OpenAlert.from_json(raw) for raw in self.redis.hvals(OPEN_KEY)]
        return sorted(found, key=lambda a: (a.first_seen, a.key))

    def close_all(self, keys: Iterable[str], at: float) -> list[OpenAlert]:
        """:meth:`close` each of ``keys``; the ones this call closed."""
        return [closed for k in keys if (closed := self.close(k, at)) is not None]


def _public(alert: OpenAlert) -> dict[str, Any]:
    return {"key": alert.key, "severity": alert.severity, "title": alert.title,
            "first_seen": alert.first_seen, "source": alert.source}  # fmt: skip
