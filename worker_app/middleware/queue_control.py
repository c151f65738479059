"""Which queues a worker consumes, and the pausing of them.

At worker boot :class:`QueueControl`

* gives a worker started without ``-Q`` the deployment's queues: ``WORKER_QUEUES`` less the domains
  with ``ENABLE_<DOMAIN>=false`` (all of them by default), so one image serves every worker group;
* widens the worker's queue list (``dramatiq worker_app -Q bot_updates``) to an ordered domain's
  shard queues (:mod:`worker_app.ordered`), which Dramatiq would otherwise leave unconsumed;
* starts this process's :class:`~worker_app.pauses.PauseWatcher` and hands it to the broker, whose
  consumers cancel and renew their subscriptions as queues are paused and resumed.
"""

from __future__ import annotations

from typing import Any

import dramatiq

from worker_app import ordered
from worker_app.broker import CyberRabbitmqBroker
from worker_app.db import Database
from worker_app.pauses import PauseWatcher


class QueueControl(dramatiq.Middleware):
    """Ordered domains' shards in the worker's queue list; paused queues honoured."""

    def __init__(self, database: Database, poll_s: float, enabled: list[str] | None = None) -> None:
        self.database = database
        self.poll_s = poll_s
        self.enabled = enabled  # None: every queue
        self.watcher: PauseWatcher | None = None

    def widen(self, worker: Any) -> None:
        """Set the worker's queue list: ``-Q`` as given, else the enabled queues (when narrowed);
        either way with each ordered domain's shards."""
        if not worker.consumer_whitelist and self.enabled is not None:
            worker.consumer_whitelist = set(self.enabled)
        if worker.consumer_whitelist:
            worker.consumer_whitelist = ordered.expand(worker.consumer_whitelist)

    def before_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        self.widen(worker)
        self.watcher = PauseWatcher(self.database, self.poll_s).start()
        if isinstance(broker, CyberRabbitmqBroker):
            broker.pauses = self.watcher

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        if self.watcher is not None:
            self.watcher.stop()
