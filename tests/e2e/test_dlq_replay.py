"""Tier 3: dead letters replayed by ``worker-app dlq`` through a real worker on RabbitMQ."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import redis
import sqlalchemy as sa

from tests.fixtures.worker import ROOT, run_worker, wait_for

WORKER_APP = str(Path(sys.executable).parent / "worker-app")


def cli(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [WORKER_APP, "dlq", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        **kwargs,
    )


def test_a_dead_letter_is_listed_shown_and_replayed_after_the_cause_is_fixed(
    tmp_path: Path, clean_tables: sa.Engine, redis_client: redis.Redis, rabbitmq_vhost: str
) -> None:
    import worker_app  # noqa: F401  (the broker for .send)
    from tests import e2e_actors

    key = f"fix-{uuid.uuid4().hex[:8]}"
    with run_worker(tmp_path / "worker.log", queues=("payments",)):
        sent = e2e_actors.e2e_fails_until_fixed.send_with_options(args=(key,), trace_id="trace-replay-1")

        def dead_id() -> int | None:
            with clean_tables.connect() as conn:
                return conn.execute(
                    sa.text("SELECT id FROM dead_letters WHERE message_id = :m"), {"m": sent.message_id}
                ).scalar()

        dead = wait_for(dead_id, 30, "the dead letter")
        listed = cli("list", "--actor", "e2e_fails_until_fixed", "--error", "NOT FIXED", "--json")
        shown = cli("show", str(dead))
        dry = cli("replay", str(dead), "--dry-run")
        redis_client.set(f"{key}:fixed", 1)
        replayed = cli("replay", str(dead), "--yes")
        assert replayed.returncode == 0, replayed.stdout + replayed.stderr
        done = wait_for(lambda: redis_client.hgetall(f"{key}:done"), 30, "the replayed message to succeed")

    assert [json.loads(line)["id"] for line in listed.stdout.splitlines()] == [dead]
    assert "PermanentError: cause of" in shown.stdout and "Traceback (most recent call last)" in shown.stdout
    assert dry.returncode == 0 and f"{dead:>6} payments" in dry.stdout and "would replay" in dry.stdout
    assert replayed.returncode == 0, replayed.stderr
    assert f"replayed {dead} as message " in replayed.stdout
    assert done == {"trace_id": "trace-replay-1", "retries": "0"}, "same trace id, fresh retry budget"
    with clean_tables.connect() as conn:
        row = conn.execute(
            sa.text(
                "SELECT status, replay_message_id, replay_started_message_id FROM dead_letters WHERE id = :i"
            ),
            {"i": dead},
        ).one()
    assert row[0] == "replayed" and row[1] == row[2]
    assert cli("replay", str(dead)).stdout.strip() == "no dead letter matches", (
        "a replayed letter is not re-sent"
    )


def test_a_replay_of_5000_killed_halfway_then_rerun_runs_each_exactly_once(
    tmp_path: Path, clean_tables: sa.Engine, redis_client: redis.Redis, rabbitmq_vhost: str
) -> None:
    key = f"replay-{uuid.uuid4().hex[:8]}"
    total = 5000
    with clean_tables.begin() as conn:
        conn.execute(
            sa.text("""
                INSERT INTO dead_letters (message_id, queue_name, actor_name, args, kwargs, options, reason,
                    exception_type, exception_message, attempts, first_failed_at, last_failed_at, trace_id)
                SELECT 'dead-' || n, 'analytics', 'e2e_replay_count',
                    jsonb_build_array(CAST(:key AS text), n),
                    '{}'::jsonb, jsonb_build_object('retries', 1, 'trace_id', 't-' || n), 'retries_exhausted',
                    'UpstreamUnavailable', 'panel answered 503', 2, now(), now(), 't-' || n
                FROM generate_series(1, :total) AS n
            """),
            {"key": key, "total": total},
        )

    def replayed() -> int:
        with clean_tables.connect() as conn:
            return int(
                conn.execute(
                    sa.text("SELECT count(*) FROM dead_letters WHERE status = 'replayed'")
                ).scalar_one()
            )

    with run_worker(tmp_path / "worker.log", queues=("analytics",)):
        first = subprocess.Popen(
            [WORKER_APP, "dlq", "replay", "--actor", "e2e_replay_count", "--yes"],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for(lambda: replayed() >= total // 2, 120, "half of the replay")
        first.send_signal(signal.SIGKILL)
        first.wait()
        confirmed_by_first = replayed()
        second = cli("replay", "--actor", "e2e_replay_count", "--yes")
        assert second.returncode == 0, second.stderr
        wait_for(lambda: redis_client.hlen(key) == total, 120, "every replayed message to run")
        wait_for(lambda: sum(map(int, redis_client.hvals(key))) >= total, 30, "the counts")
    runs = {int(n): int(c) for n, c in redis_client.hgetall(key).items()}
    assert sorted(runs) == list(range(1, total + 1)), "every dead letter ran"
    assert set(runs.values()) == {1}, f"ran twice: {[n for n, c in runs.items() if c > 1][:10]}"
    assert replayed() == total
    with clean_tables.connect() as conn:
        republished = conn.execute(
            sa.text("SELECT count(*) FROM dead_letters WHERE replay_started_message_id <> replay_message_id")
        ).scalar_one()
    print(
        f"\nfirst run confirmed {confirmed_by_first} of {total} before SIGKILL; the re-run replayed the "
        f"rest; {republished} dead letter(s) published twice (dropped by the worker's claim); each ran once"
    )
    assert (
        f"replayed {total - confirmed_by_first} of {total - confirmed_by_first} dead letter(s)"
        in second.stdout
    )


def test_the_same_through_the_http_api(
    tmp_path: Path, make_runtime: Any, redis_client: redis.Redis, rabbitmq_vhost: str, clean_tables: sa.Engine
) -> None:
    import worker_app
    from tests import e2e_actors
    from worker_app.web.api import create_app

    client = create_app(make_runtime(API_TOKEN="t0ken"), worker_app.broker).test_client()
    auth = {"Authorization": "Bearer t0ken"}
    key = f"api-fix-{uuid.uuid4().hex[:8]}"
    with run_worker(tmp_path / "worker.log", queues=("payments",)):
        e2e_actors.e2e_fails_until_fixed.send(key)
        listed = wait_for(
            lambda: client.get("/api/v1/dead-letters?actor=e2e_fails_until_fixed", headers=auth).json[
                "items"
            ],
            30, "the dead letter in the API",
        )  # fmt: skip
        dead = listed[0]["id"]
        shown = client.get(f"/api/v1/dead-letters/{dead}", headers=auth).json
        assert "PermanentError: cause of" in shown["traceback"]
        redis_client.set(f"{key}:fixed", 1)
        replayed = client.post("/api/v1/dead-letters/replay", json={"ids": [dead]}, headers=auth).json
        assert (replayed["matched"], replayed["replayed"]) == (1, 1)
        wait_for(lambda: redis_client.exists(f"{key}:done"), 30, "the replayed message to succeed")
