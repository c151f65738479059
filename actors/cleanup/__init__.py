"""Cleanup: expired tokens, old audit/webhook logs, settled notifications and jobs, stale Redis keys.

Package = domain = queue ``cleanup``; retry policy: ``worker_app.policies.POLICIES['cleanup']``.
The PostgreSQL jobs all delete through :func:`actors.cleanup.batches.delete_in_batches`.
"""

from __future__ import annotations

from worker_app.domains import register_cli
from worker_app.heartbeat import declare_heartbeat

QUEUE = "cleanup"

heartbeat = declare_heartbeat(QUEUE)
register_cli("actors.cleanup.cli:cleanup")

from actors.cleanup.audit_logs import cleanup_audit_logs  # noqa: E402  (needs QUEUE)
from actors.cleanup.exports import cleanup_expired_exports  # noqa: E402
from actors.cleanup.finished_jobs import cleanup_finished_jobs  # noqa: E402
from actors.cleanup.notifications import cleanup_old_notifications  # noqa: E402
from actors.cleanup.stale_cache import cleanup_stale_cache  # noqa: E402
from actors.cleanup.tokens import cleanup_expired_tokens  # noqa: E402
from actors.cleanup.webhook_logs import cleanup_webhook_logs  # noqa: E402

__all__ = [
    "QUEUE",
    "cleanup_audit_logs",
    "cleanup_expired_exports",
    "cleanup_expired_tokens",
    "cleanup_finished_jobs",
    "cleanup_old_notifications",
    "cleanup_stale_cache",
    "cleanup_webhook_logs",
    "heartbeat",
]
