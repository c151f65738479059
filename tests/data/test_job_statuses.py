"""The migrations' ``jobs.status`` check allows exactly the model's statuses (``worker-app db check``
compares columns, not the contents of CHECK constraints, so a status added to the model without a
migration would only fail at the first write of it)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from models.worker import FINISHED_JOB_STATUSES, JOB_STATUSES

INSERT = sa.text("INSERT INTO jobs (job_id, actor_name, queue_name, status) VALUES (:id, 'a', 'q', :status)")


def test_every_job_status_of_the_model_is_allowed_by_the_migrated_database(clean_tables: sa.Engine) -> None:
    with clean_tables.begin() as conn:
        for status in JOB_STATUSES:
            conn.execute(INSERT, {"id": f"job-{status}", "status": status})
        assert conn.execute(sa.text("SELECT count(*) FROM jobs")).scalar_one() == len(JOB_STATUSES)
    with pytest.raises(sa.exc.IntegrityError, match="ck_jobs_status"), clean_tables.begin() as conn:
        conn.execute(INSERT, {"id": "job-bogus", "status": "paused"})
    assert set(FINISHED_JOB_STATUSES) < set(JOB_STATUSES)
