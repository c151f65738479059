"""The journal of a bulk user operation: one ``bulk_batches`` row per batch (see
:class:`models.worker.BulkBatch`), inserted before the batch's panel calls and completed after them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert

from models import BulkBatch
from worker_app.db import Database


@dataclass(frozen=True)
class StoredBatch:
    """A batch as the journal has it: ``finished`` False means the worker died during it."""

    batch_no: int
    started_at: datetime
    finished: bool
    failed: list[dict[str, Any]]
    verified: int
    calls: int
    expire_before: dict[int, datetime]


class Journal:
    """One operation's batches (``operation_id``: its job id)."""

    def __init__(self, database: Database, operation_id: str) -> None:
        self.database = database
        self.operation_id = operation_id
        self.calls_before = 0
        """Panel calls made by earlier runs of this operation (their finished batches)."""

    def stored(self) -> dict[int, StoredBatch]:
        """Every batch recorded so far, by number."""
        with self.database.new_session() as s:
            rows = s.scalars(select(BulkBatch).where(BulkBatch.operation_id == self.operation_id)).all()
        found = {
            r.batch_no: StoredBatch(
                r.batch_no, r.started_at, r.finished_at is not None, list(r.failed), r.verified, r.calls,
                {int(u): datetime.fromisoformat(at) for u, at in (r.expire_before or {}).items()},
            )
            for r in rows
        }  # fmt: skip
        self.calls_before = sum(b.calls for b in found.values() if b.finished)
        return found

    def start(self, batch_no: int, size: int, *, expire_before: Mapping[int, datetime]) -> None:
        """Record the batch as begun (committed before any of its calls), with the users' expiry
        before it when the operation changes it relatively (``extend``)."""
        before = {str(u): at.isoformat() for u, at in expire_before.items()} or None
        with self.database.transaction() as s:
            s.execute(
                insert(BulkBatch)
                .values(operation_id=self.operation_id, batch_no=batch_no, size=size, expire_before=before)
                .on_conflict_do_nothing()
            )

    def finish(
        self, batch_no: int, *, succeeded: int, verified: int, failed: dict[int, str], calls: int
    ) -> None:
        """Record the batch's outcome: from now on a redelivery skips it."""
        with self.database.transaction() as s:
            s.execute(
                update(BulkBatch)
                .where(BulkBatch.operation_id == self.operation_id, BulkBatch.batch_no == batch_no)
                .values(
                    finished_at=datetime.now().astimezone(), succeeded=succeeded, verified=verified,
                    failed=[{"user_id": u, "error": e} for u, e in failed.items()], calls=calls,
                )
            )  # fmt: skip
