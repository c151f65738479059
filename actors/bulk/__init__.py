"""Bulk operations: user operations in batches with progress, bulk broadcasts, data exports.

Package = domain = queue ``bulk``; retry policy: ``worker_app.policies.POLICIES['bulk']``.
"""

from __future__ import annotations

from worker_app.heartbeat import declare_heartbeat

QUEUE = "bulk"

heartbeat = declare_heartbeat(QUEUE)

from actors.bulk.broadcast import execute_bulk_broadcast  # noqa: E402  (needs QUEUE)
from actors.bulk.exports import generate_data_export  # noqa: E402
from actors.bulk.users import execute_bulk_user_operation  # noqa: E402

__all__ = [
    "QUEUE",
    "execute_bulk_broadcast",
    "execute_bulk_user_operation",
    "generate_data_export",
    "heartbeat",
]
