"""A bulk user operation through the real processes: ``worker-app serve`` takes it, a ``dramatiq
worker_app`` worker runs it against the sandbox panel, a subscriber reads its progress from the SSE
stream, and the worker is SIGKILLed at 40 % and started again."""

from __future__ import annotations

import json
import os
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import redis
import requests
import sqlalchemy as sa

from actors.bulk.progress import progress_key
from tests.api.test_events import Subscriber
from tests.fixtures.api import serving
from tests.fixtures.remnawave import Panel
from tests.fixtures.worker import wait_for, worker_group
from worker_app.runtime import Runtime

TOKEN = "bulk-e2e-token-42"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
USERS = 2_000


def progress(redis_client: redis.Redis, job_id: str) -> dict[str, Any]:
    return dict(json.loads(redis_client.get(progress_key(job_id)) or "{}"))


def summaries(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        query = sa.text("SELECT count(*) FROM notification_queue WHERE notification_type = 'bulk_summary'")
        return int(conn.execute(query).scalar_one())


def test_a_worker_killed_at_40_percent_resumes_and_applies_each_user_once(
    tmp_path: Path, panel: Panel, panel_runtime: Runtime, redis_client: redis.Redis, clean_tables: sa.Engine,
    no_leftover_messages: None,
) -> None:  # fmt: skip
    # Given 2,000 ACTIVE users (5 of them failing in the panel), a panel answering in 20 ms
    created = panel.seed(count=USERS, statuses={"ACTIVE": 1.0}, expire_within_days=[30, 60], seed=5)
    ids = list(range(created["first_id"], created["last_id"] + 1))
    failing = set(ids[300:1800:300])
    panel.faults(failing_users={"ids": sorted(failing)}, latency_ms=20)
    env = {"API_TOKEN": TOKEN, "REMNAWAVE_URL": panel.url, "ADMIN_TELEGRAM_IDS": "4242"}
    with serving(tmp_path / "serve.log", env) as base:
        subscriber = Subscriber(f"{base}/api/v1/events", headers=AUTH)
        subscriber.connected()
        with worker_group(tmp_path / "worker-1.log", env, ("bulk",), processes=1, threads=2) as first:
            # When an admin disables them all through the API
            answer = requests.post(f"{base}/api/v1/bulk/users", headers=AUTH, timeout=10, json={
                "operation": "disable", "user_ids": ids, "initiated_by": "admin:4242",
            })  # fmt: skip
            assert answer.status_code == 202, answer.text
            job_id = answer.json()["job_id"]
            # and the worker is killed once 40 % are done
            wait_for(lambda: progress(redis_client, job_id).get("processed", 0) >= 0.4 * USERS, 60, "40 %",
                     poll_s=0.01)  # fmt: skip
            os.killpg(first.proc.pid, signal.SIGKILL)
            first.proc.wait(10)
        killed_at = progress(redis_client, job_id)["processed"]
        assert killed_at < USERS

        # Then a new worker gets the message again and finishes the job
        with worker_group(tmp_path / "worker-2.log", env, ("bulk",), processes=1, threads=2):
            done = wait_for(lambda: (p := progress(redis_client, job_id)).get("processed") == USERS and p,
                            120, "the job to finish after the restart")  # fmt: skip
            job = wait_for(lambda: (j := requests.get(f"{base}/api/v1/jobs/{job_id}", headers=AUTH, timeout=5)
                                    .json())["status"] == "succeeded" and j, 30, "the job row")  # fmt: skip
        seen: list[dict[str, Any]] = []
        while not subscriber.events.empty():
            kind, data = subscriber.events.get()
            if kind == "bulk_progress" and data["job_id"] == job_id:
                seen.append(data)
        subscriber.close()

    # with exact counts
    assert (done["total"], done["failed"]) == (USERS, len(failing))
    assert {e["user_id"] for e in done["errors"]} == failing
    assert job["result"]["succeeded"] == USERS - len(failing)
    # each user's action applied once, as the panel recorded the calls
    applied = Counter(u for c in panel.calls("/api/users/bulk") if c["status"] == 202 for u in c["ids"])
    assert set(applied) == set(ids) - failing and set(applied.values()) == {1}
    sample = ids[::50]
    assert {u for u in sample if panel.user(u)["status"] == "ACTIVE"} == failing & set(sample)
    # the progress was seen live on the SSE stream, before and after the kill, and the summary once
    processed = [e["processed"] for e in seen if e["status"] == "running"]
    assert processed == sorted(processed) and processed[-1] == USERS
    assert any(p <= killed_at for p in processed) and any(p > killed_at for p in processed)
    assert seen[-1]["status"] == "completed"
    assert summaries(clean_tables) == 1
