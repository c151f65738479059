"""Scenario 5: Redis dies in the middle of a 600-chat broadcast and comes back, empty, 10 s later.

A worker (2 processes x 4 threads, two drains of 50-row batches) runs with ``REDIS_URL`` pointing at a
private ``redis-server`` — never the shared one — that shares a 60 sends/s limit between its
processes. After 150 sends the test SIGKILLs that Redis and starts it again 10 s later, on the same
port and with no data, as after a crash. The test plays the scheduler's tick once a second.

Designed degradation (docs/operations.md, "Redis down"): each process falls back to its local send
rate (TELEGRAM_FALLBACK_RATE_PER_S, 5/s), drainer slots fail open to one drain per process,
broadcast progress updates are skipped until Redis is back, each with one WARNING per process, and
one INFO when Redis answers again.

Pass, from side effects only (rows in PostgreSQL, the sandbox's calls, the private Redis, the
worker's JSON log): every row sent exactly once, the worker processes alive, sends went on during
the outage — at no more than the local rate per process — and the broadcast's progress, lost with
Redis, is written again and ends settled with the full report.
"""

from __future__ import annotations

import itertools
import json
import time
from collections import Counter
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session

import worker_app
from actors.notifications import broadcast
from sandbox.server import RunningSandbox
from tests.fixtures.chaos import accepted, telegram_env, ticking, unsent_rows
from tests.fixtures.notifications import PrivateRedis
from tests.fixtures.worker import WorkerProcess, wait_for, worker_group
from tests.reliability.report import ScenarioReport, report
from worker_app.heartbeat import ping

ROWS, DOWN_S = 600, 10.0
PROCESSES, LOCAL_RATE_PER_S = 2, 5.0
BROADCAST_ID = "redis-down-broadcast"


def wait_consuming(worker: WorkerProcess, redis_server: PrivateRedis) -> None:
    """The worker answers heartbeats — in its own Redis, which the test's runtime does not use."""
    client = redis_server.client()

    def answered() -> bool:
        assert worker.proc.poll() is None, f"worker exited:\n{worker.log()[-3000:]}"
        return bool(ping(worker_app.broker, client, ["notifications"], timeout_s=2)["notifications"])

    wait_for(answered, 60, "the worker to consume notifications")


def fallback_log(worker: WorkerProcess) -> Counter[tuple[str, str]]:
    """(level, Redis use) of the worker's fallback log lines."""
    lines: Counter[tuple[str, str]] = Counter()
    for line in worker.log().splitlines():
        record = json.loads(line) if line.startswith("{") else {}
        if record.get("logger") == "worker_app.redis_fallback":
            use = str(record["msg"]).split(" for ", 1)[1].split(" (", 1)[0].split(":", 1)[0]
            lines[(record["level"], use)] += 1
    return lines


def test_redis_down_mid_broadcast_degrades_to_local_limits_and_loses_nothing(
    tmp_path: Path, rabbitmq_vhost: str, sandbox: RunningSandbox, clean_tables: sa.Engine,
    private_redis: PrivateRedis,
) -> None:  # fmt: skip
    chats = list(range(70_000, 70_000 + ROWS))
    with Session(clean_tables) as session, session.begin():
        broadcast.create_broadcast(
            session, BROADCAST_ID, chats, message="Maintenance", notification_type="test", parse_mode=None
        )
    env = {
        **telegram_env(sandbox), "REDIS_URL": private_redis.url, "TELEGRAM_GLOBAL_RATE_PER_S": "60",
        "TELEGRAM_FALLBACK_RATE_PER_S": str(LOCAL_RATE_PER_S), "LOG_FORMAT": "json",
        "NOTIFICATION_DRAINERS": "2", "NOTIFICATION_BATCH_SIZE": "50", "NOTIFICATION_DRAIN_BUDGET_S": "10",
        "NOTIFICATION_POLL_INTERVAL_S": "0",
    }  # fmt: skip
    log_path = tmp_path / "worker.log"
    with worker_group(
        log_path, env, ("notifications",), modules=(), processes=PROCESSES, wait_consuming=False
    ) as worker:
        wait_consuming(worker, private_redis)
        wait_for(ticking(lambda: len(accepted(sandbox)) >= 150), 60, "150 sends before Redis dies")
        # When Redis dies for 10 s, and comes back empty
        private_redis.kill()
        killed_at = time.time()
        wait_for(ticking(lambda: time.time() - killed_at >= DOWN_S), DOWN_S + 5, "the outage to last")
        back_at = time.time()  # the outage ends as Redis starts: senders may use it before start() returns
        private_redis.start()
        # Then every row is sent, and the broadcast's progress is rebuilt and settled
        wait_for(ticking(lambda: unsent_rows(clean_tables) == 0), 90, "every row to be sent", poll_s=1.0)
        progress = private_redis.client()
        wait_for(
            ticking(lambda: broadcast.read_progress(progress, BROADCAST_ID).get("status") == "settled"),
            30, "the broadcast's final report", poll_s=1.0,
        )  # fmt: skip
        assert worker.proc.poll() is None, "the worker survived the outage"
        logged = fallback_log(worker)

    sends = accepted(sandbox)
    per_chat = Counter(e["chat_id"] for e in sends)
    arrivals = sorted(float(e["arrived_at"]) for e in sends)
    # the outage proper: from a second after the kill (sends booked on Redis before it are done)
    during = [t for t in arrivals if killed_at + 1 <= t < back_at]
    rate = len(during) / (back_at - killed_at - 1)
    stall_s = max(b - a for a, b in itertools.pairwise([killed_at, *[t for t in arrivals if t > killed_at]]))
    result = report(ScenarioReport(
        scenario=f"Redis killed for {DOWN_S:.0f} s during a {ROWS}-chat broadcast", messages=ROWS,
        processed=len(per_chat), lost=ROWS - len(per_chat), duplicated=sum(n - 1 for n in per_chat.values()),
        recovery_s=stall_s,
        note=f"{len(during)} sends in the {back_at - killed_at - 1:.1f} s without Redis "
        f"({rate:.1f}/s for {PROCESSES} processes at {LOCAL_RATE_PER_S:g}/s each); "
        "recovery = the longest pause in sending from the kill on",
    ))  # fmt: skip

    assert result.lost == 0 and result.duplicated == 0
    final = broadcast.read_progress(private_redis.client(), BROADCAST_ID)
    assert (final["total"], final["sent"], final["failed"]) == (str(ROWS), str(ROWS), "0")
    assert during, "sending went on without Redis"
    local_cap = PROCESSES * (LOCAL_RATE_PER_S * (back_at - killed_at - 1) + 1)
    assert len(during) <= local_cap, "without Redis each process sends at most its local rate"
    # one warning per process and use when it fell back, and the rate limits came back to Redis
    assert 1 <= logged[("WARNING", "telegram rate limits")] <= PROCESSES
    assert logged[("INFO", "telegram rate limits")] >= 1
    assert all(n <= PROCESSES for (level, _), n in logged.items() if level == "WARNING")
