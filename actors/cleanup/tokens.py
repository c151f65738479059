"""``cleanup_expired_tokens`` (02:00 UTC daily): refresh tokens that can no longer be used.

Two targets, one after the other, in the same run and budget: ``expired`` — ``expires_at`` before
now (on ``ix_refresh_tokens_expires_at``) — then ``revoked`` — ``revoked_at`` set on a token not yet
expired (on the partial index ``ix_refresh_tokens_revoked_at``, migration 0013). Together they are
the PRD's ``expires_at < now() OR revoked_at IS NOT NULL``, each row counted once.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import dramatiq

from actors.cleanup import QUEUE
from actors.cleanup.batches import Target
from actors.cleanup.run import run_job
from worker_app.config import Settings
from worker_app.runtime import get_runtime

JOB = "cleanup_expired_tokens"


def targets(settings: Settings, now: datetime) -> list[Target]:
    """The tokens due at ``now``."""
    at_now = {"now": now}
    return [
        Target("expired", "refresh_tokens", "expires_at", now),
        Target("revoked", "refresh_tokens", "revoked_at", None, where="expires_at >= :now", params=at_now),
    ]


@dramatiq.actor(queue_name=QUEUE, store_results=True)
def cleanup_expired_tokens() -> dict[str, Any]:
    """Delete expired and revoked refresh tokens in batches (daily, 02:00 UTC)."""
    runtime = get_runtime()
    return run_job(runtime, JOB, targets(runtime.settings, datetime.now(UTC)))
