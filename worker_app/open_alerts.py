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

Redis keys (no TTL — an alert is open until its condition clears or its source closes it):
``cybervpn:alerts:open`` (hash: key → JSON ``{key, severity, title, first_seen, last_seen, source}``
as opened) and ``cybervpn:alerts:open:seen`` (hash: key → JSON ``{last_seen, title?}`` of the last
run that found it still true).
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
SEEN_KEY = key("alerts", "open", "seen")

# KEYS = open, seen; ARGV = alert key, its seen JSON, alert key, its seen JSON, ...: the seen JSON is
# written for the alerts still open only (in one step: an alert closed meanwhile stays closed).
_TOUCH = """
for i = 1, #ARGV, 2 do
  if redis.call('HEXISTS', KEYS[1], ARGV[i]) == 1 then redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
end
return 0
"""


@dataclass(frozen=True)
class OpenAlert:
    key: str
    severity: Severity
    title: str
    first_seen: float
    last_seen: float
    source: str
    """What opened it (``check_anomalies``, ``check_server_health``, …)."""


class OpenAlerts:
    """The open alerts in Redis; every method raises :class:`redis.RedisError` when Redis is down."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._touch = client.register_script(_TOUCH)

    def open(self, alert: OpenAlert) -> bool:
        """Record ``alert``; whether this call opened it (``False``: it was open already, and only
        its ``last_seen`` and title are refreshed, its first-seen time kept)."""
        if self.redis.hsetnx(OPEN_KEY, alert.key, json.dumps(asdict(alert))):
            publish(self.redis, [new_event("alert_opened", alert.first_seen, **_public(alert))])
            return True
        self.touch([alert.key], alert.last_seen, alert.title)
        return False

    def close(self, alert_key: str, at: float) -> OpenAlert | None:
        """Remove the alert ``alert_key``: what it was, to the one call that removed it; else None."""
        current = self.get(alert_key)
        if current is None or not self.redis.hdel(OPEN_KEY, alert_key):
            return None
        self.redis.hdel(SEEN_KEY, alert_key)
        publish(
            self.redis, [new_event("alert_resolved", at, **_public(current), open_s=at - current.first_seen)]
        )
        return current

    def touch(self, keys: Iterable[str], at: float, title: str | None = None) -> None:
        """Set ``last_seen`` (and ``title``, if given) of those of ``keys`` that are open: a run found
        them still true. Never brings back an alert closed meanwhile."""
        seen = json.dumps({"last_seen": at, **({"title": title} if title else {})})
        args = [part for alert_key in keys for part in (alert_key, seen)]
        if args:
            self._touch(keys=[OPEN_KEY, SEEN_KEY], args=args)

    def get(self, alert_key: str) -> OpenAlert | None:
        raw, seen = self.redis.hget(OPEN_KEY, alert_key), self.redis.hget(SEEN_KEY, alert_key)
        return _merged(raw, seen) if raw else None

    def keys(self, prefix: str) -> set[str]:
        """The open alerts' keys that start with ``prefix``."""
        return {str(k) for k in self.redis.hkeys(OPEN_KEY) if str(k).startswith(prefix)}

    def all(self) -> list[OpenAlert]:
        """Every open alert, the oldest first."""
        opened, seen = self.redis.hgetall(OPEN_KEY), self.redis.hgetall(SEEN_KEY)
        found = [_merged(raw, seen.get(alert_key)) for alert_key, raw in opened.items()]
        return sorted(found, key=lambda a: (a.first_seen, a.key))

    def close_all(self, keys: Iterable[str], at: float) -> list[OpenAlert]:
        """:meth:`close` each of ``keys``; the ones this call closed."""
        return [closed for k in keys if (closed := self.close(k, at)) is not None]


def _merged(raw: str | bytes, seen: str | bytes | None) -> OpenAlert:
    return OpenAlert(**{**json.loads(raw), **(json.loads(seen) if seen else {})})


def _public(alert: OpenAlert) -> dict[str, Any]:
    return {"key": alert.key, "severity": alert.severity, "title": alert.title,
            "first_seen": alert.first_seen, "source": alert.source}  # fmt: skip
