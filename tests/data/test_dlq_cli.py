"""``worker-app dlq list/show/drain`` show what the store recorded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import redis
import sqlalchemy as sa

from worker_app.dead_letters import SPOOL_KEY, DeadLetterRecord

WORKER_APP = str(Path(sys.executable).parent / "worker-app")


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [WORKER_APP, *args], env=os.environ, capture_output=True, text=True, timeout=60, check=False
    )


def test_operator_lists_and_reads_a_dead_letter_with_its_traceback(
    clean_tables: sa.Engine, redis_client: redis.Redis
) -> None:
    # Given a dead letter spooled while PostgreSQL was down
    now = int(time.time() * 1000)
    spooled = DeadLetterRecord(
        message_id="m-cli",
        queue_name="payments",
        reason="retries_exhausted",
        actor_name="verify_pending",
        args=[3],
        kwargs={},
        exception_type="UpstreamUnavailable",
        exception_message="crypto pay answered 502",
        traceback="Traceback (most recent call last):\n  ...\nUpstreamUnavailable: crypto pay answered 502",
        attempts=4,
        first_failed_at=now,
        last_failed_at=now,
        trace_id="t-cli",
    )
    redis_client.lpush(SPOOL_KEY, spooled.to_json())

    # When the operator drains the spool, lists and shows it
    drained = cli("dlq", "drain")
    listed = cli("dlq", "list", "--queue", "payments")
    with clean_tables.connect() as conn:
        dead_id = conn.execute(sa.text("SELECT id FROM dead_letters WHERE message_id = 'm-cli'")).scalar_one()
    shown = cli("dlq", "show", str(dead_id))

    # Then each answers with the record
    assert "moved 1 spooled dead letter(s)" in drained.stdout
    assert "verify_pending" in listed.stdout and "retries_exhausted" in listed.stdout
    assert '"trace_id": "t-cli"' in shown.stdout
    assert "UpstreamUnavailable: crypto pay answered 502" in shown.stdout
    assert cli("dlq", "show", "999999").returncode == 1


def _insert_dead(engine: sa.Engine, rows: list[dict[str, object]]) -> list[int]:
    with engine.begin() as conn:
        return [
            conn.execute(
                sa.text("""
                    INSERT INTO dead_letters (message_id, queue_name, actor_name, args, kwargs, options,
                        reason, exception_type, exception_message, attempts, first_failed_at,
                        last_failed_at, dead_at)
                    VALUES (:message_id, :queue, :actor, '[1]', '{}', '{"trace_id": "t"}', 'permanent_error',
                        :etype, :emsg, 1, now(), now(), now() - make_interval(hours => :hours_ago))
                    RETURNING id
                """),
                row,
            ).scalar_one()
            for row in rows
        ]


def test_filters_discard_and_export(
    clean_tables: sa.Engine, redis_client: redis.Redis, tmp_path: Path
) -> None:
    ids = _insert_dead(clean_tables, [
        {"message_id": "a", "queue": "payments", "actor": "pay", "etype": "PermanentError",
         "emsg": "invoice missing", "hours_ago": 1},
        {"message_id": "b", "queue": "payments", "actor": "pay", "etype": "UpstreamUnavailable",
         "emsg": "crypto pay 502", "hours_ago": 30},
        {"message_id": "c", "queue": "sync", "actor": "sync_it", "etype": "UpstreamUnavailable",
         "emsg": "panel 503", "hours_ago": 2},
    ])  # fmt: skip

    def listed(*args: str) -> list[int]:
        out = cli("dlq", "list", "--json", *args)
        assert out.returncode == 0, out.stderr
        return sorted(json.loads(line)["id"] for line in out.stdout.splitlines())

    assert listed() == ids
    assert listed("--queue", "payments") == ids[:2]
    assert listed("--error", "upstream") == ids[1:]
    assert listed("--since", "24h") == [ids[0], ids[2]]
    assert listed("--until", "24h") == [ids[1]]
    assert listed("--actor", "pay", "--error", "502") == [ids[1]]
    bad_time = cli("dlq", "list", "--since", "yesterday")
    assert bad_time.returncode == 2 and "'yesterday': expected an ISO time" in bad_time.stderr

    assert "name dead letter ids or a filter to discard, or pass --all" in cli("dlq", "discard").stderr
    declined = subprocess.run(
        [WORKER_APP, "dlq", "discard", "--queue", "sync"], input="n\n", capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert declined.returncode == 1 and listed() == ids, "declining changes nothing"
    discarded = cli("dlq", "discard", "--queue", "sync", "--yes")
    assert discarded.stdout.strip() == "discarded 1 dead letter(s)"
    assert listed() == ids[:2]
    assert listed("--status", "discarded") == [ids[2]]
    assert cli("dlq", "replay", str(ids[2])).stdout.strip() == "no dead letter matches", "discarded is final"
    declined_replay = subprocess.run(
        [WORKER_APP, "dlq", "replay", str(ids[0])], input="n\n", capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert declined_replay.returncode == 1 and listed() == ids[:2], "declining a replay by id replays nothing"

    out = tmp_path / "dead.jsonl"
    exported = cli("dlq", "export", "--queue", "payments", "-o", str(out))
    assert "exported 2 dead letter(s)" in exported.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["message_id"] for r in records] == ["a", "b"]
    assert records[0]["exception_message"] == "invoice missing" and "traceback" in records[0]


def test_a_search_matches_the_actor_the_error_or_the_arguments_in_any_case(clean_tables: sa.Engine) -> None:
    from worker_app import dlq as ops
    from worker_app.db import Database

    # Given three dead letters differing in actor, error and arguments
    with clean_tables.begin() as conn:
        for message_id, queue, actor, args, error in (
            ("s1", "payments", "verify_pending", '["inv_100%"]', "invoice missing"),
            ("s2", "payments", "poll_invoices", '[{"user": "Ann"}]', "crypto pay 502"),
            ("s3", "sync", "sync_user", "[]", "panel answered 503 for ann"),
        ):
            conn.execute(
                sa.text("""INSERT INTO dead_letters (message_id, queue_name, actor_name, args, kwargs, reason,
                           exception_type, exception_message, first_failed_at, last_failed_at)
                           VALUES (:m, :q, :a, CAST(:args AS jsonb), '{"mode": "full"}', 'failed',
                                   'UpstreamUnavailable', :e, now(), now())"""),
                {"m": message_id, "q": queue, "a": actor, "args": args, "e": error},
            )
    database = Database(clean_tables.url.render_as_string(hide_password=False))

    def found(q: str, **filters: str) -> list[str]:
        where = ops.DeadLetterFilter(q=q, queue=filters.get("queue"))
        assert ops.count(database, where) == len(ops.listing(database, where, 10))
        return sorted(d.message_id for d in ops.listing(database, where, 10))

    # Then a search reads each of them, case-insensitively, and combines with the other filters
    assert found("VERIFY") == ["s1"]
    assert found("upstreamunavailable") == ["s1", "s2", "s3"]
    assert found("ann") == ["s2", "s3"] and found("ann", queue="sync") == ["s3"]
    assert found('"user": "ann"') == ["s2"], "arguments are searched as their JSON text"
    assert found("full") == ["s1", "s2", "s3"], "kwargs too"
    assert (
        found("100%") == ["s1"] and found("inv_1") == ["s1"] and found("1%0") == [] and found("v_1") == ["s1"]
    )
    assert found("in_") == [], "_ is an underscore, not any character"
    assert not ops.DeadLetterFilter(q="x").is_empty()

    # And discarding a search discards exactly its matches
    assert ops.discard(database, ops.DeadLetterFilter(q="ANN")) == 2
    assert found("ann") == [] and found("inv") == ["s1"]
    database.dispose()
