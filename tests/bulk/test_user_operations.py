"""Bulk user operations against the sandbox panel over HTTP, on the real PostgreSQL and Redis."""

from __future__ import annotations

import json
import random
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis

from actors.bulk.narrowing import apply_batch
from actors.bulk.progress import EVENT_TYPE, Progress, ProgressWriter, progress_key
from actors.bulk.users import Result, Run, check_params, execute, plan_ids, summary_text
from tests.fixtures.notifications import PrivateRedis
from tests.fixtures.remnawave import Panel, user_spec
from worker_app import events
from worker_app.errors import JobCancelled, PermanentError
from worker_app.runtime import Runtime

BULK_WRITES = ("POST /api/users/bulk/",)


def run_of(runtime: Runtime, **overrides: Any) -> Run:
    return Run(runtime.database, runtime.remnawave, runtime.settings,
               ProgressWriter(runtime.redis, sleep=lambda _s: None), sleep=lambda _s: None,
               **overrides)  # fmt: skip


def write_calls(panel: Panel) -> list[dict[str, Any]]:
    return [c for c in panel.calls("/api/users") if c["route"].startswith(BULK_WRITES)]


class EventLog:
    """Every ``bulk_progress`` event published while it listens (a pub/sub subscriber)."""

    def __init__(self, client: redis.Redis) -> None:
        self.pubsub = client.pubsub(ignore_subscribe_messages=True)
        self.pubsub.subscribe(events.EVENTS_CHANNEL)
        self.pubsub.get_message(timeout=1)
        self.seen: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        while not self._stop.is_set():
            message = self.pubsub.get_message(timeout=0.1)
            if message is not None:
                event = json.loads(message["data"])
                if event["type"] == EVENT_TYPE:
                    self.seen.append(event)

    def close(self) -> list[dict[str, Any]]:
        self._stop.set()
        self._thread.join(5)
        self.pubsub.close()
        return self.seen


@pytest.fixture
def event_log(redis_client: redis.Redis) -> Iterator[EventLog]:
    log = EventLog(redis_client)
    yield log
    log.close()


# -- narrowing, without any service ---------------------------------------------------------------


def failing_on(bad: set[int]) -> Any:
    return lambda group: "A001 Server error" if set(group) & bad else None


@pytest.mark.parametrize("position", [0, 17, 49])
def test_one_failing_user_of_50_is_found_in_a_few_calls_and_the_others_are_applied(position: int) -> None:
    outcome = apply_batch(list(range(50)), failing_on({position}), max_failed=10)
    assert outcome.failed == {position: "A001 Server error"}
    assert sorted(outcome.applied) == [u for u in range(50) if u != position]
    assert outcome.calls <= 10


def test_a_refusal_that_does_not_come_back_accuses_nobody() -> None:
    answers = iter(["A001 flaky"])
    outcome = apply_batch(list(range(50)), lambda _group: next(answers, None), max_failed=10)
    assert outcome.failed == {}
    assert sorted(outcome.applied) == list(range(50))


def test_a_batch_the_panel_refuses_whole_stops_narrowing_after_max_failed() -> None:
    outcome = apply_batch(list(range(50)), lambda _group: "A089 refused", max_failed=10)
    assert set(outcome.failed) == set(range(50)) and not outcome.applied
    assert sum("not narrowed further" in e for e in outcome.failed.values()) == 40
    assert outcome.calls <= 70  # and the job stops after such a batch (below)


def test_fifty_failing_users_among_ten_thousand_cost_at_most_600_calls_in_any_spread() -> None:
    for seed in range(20):
        bad = set(random.Random(seed).sample(range(10_000), 50))
        calls, failed = 0, set()
        for start in range(0, 10_000, 50):
            outcome = apply_batch(list(range(start, start + 50)), failing_on(bad), max_failed=10)
            calls += outcome.calls
            failed |= set(outcome.failed)
        assert failed == bad
        assert calls <= 600


# -- arguments ------------------------------------------------------------------------------------


def test_ids_are_deduplicated_in_order_and_malformed_ones_reported_by_position() -> None:
    plan = plan_ids([5, "7", 5, "abc", -1, 0, True, 2.5, None, " 9 ", 7, 2**63])
    assert plan.user_ids == [5, 7, 9]
    assert plan.duplicates == 2
    assert [e["user_id"] for e in plan.invalid] == ["abc", -1, 0, "True", 2.5, "None", 2**63]
    assert plan.invalid[0]["error"] == "user_ids[3]: not a user id (a positive integer)"


@pytest.mark.parametrize(
    ("operation", "params", "message"),
    [
        ("explode", None, "operation must be one of disable, enable, reset_traffic, delete, extend"),
        ("disable", {"days": 3}, "params: disable takes no parameters"),
        ("extend", None, "params.days: extend needs a whole number of days, 1-9999, got None"),
        ("extend", {"days": 0}, "params.days"),
        ("extend", {"days": "3"}, "params.days"),
        ("extend", {"days": 3, "hours": 1}, "params: extend takes only 'days'"),
    ],
)
def test_bad_operation_or_params_are_refused_naming_them(operation: str, params: Any, message: str) -> None:
    with pytest.raises(PermanentError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_params(operation, params)


# -- against the panel ----------------------------------------------------------------------------


def test_ten_thousand_users_disabled_with_fifty_failing_in_the_panel(
    panel: Panel, panel_runtime: Runtime, redis_client: redis.Redis, event_log: EventLog
) -> None:
    # Given 10,000 ACTIVE users, 50 of whom the panel fails to write, and a request with 20
    # duplicates and 5 malformed ids
    created = panel.seed(count=10_000, statuses={"ACTIVE": 1.0}, expire_within_days=[30, 60], seed=3)
    ids = list(range(created["first_id"], created["last_id"] + 1))
    failing = set(random.Random(7).sample(ids, 50))
    panel.faults(failing_users={"ids": sorted(failing), "code": "A001"})
    requested: list[Any] = [*ids, *ids[100:120], "x1", -5, 0, None, "12.5"]
    key_after_batch: list[dict[str, Any]] = []

    def observe(progress: Progress) -> None:  # the key as Redis has it right after each batch
        key_after_batch.append(json.loads(redis_client.get(progress_key("op-10k")) or "{}"))
        assert key_after_batch[-1]["processed"] == progress.processed

    # When the operation runs
    result = execute(run_of(panel_runtime, report=observe), "op-10k", "disable", requested, None)

    # Then exactly the right users are disabled
    statuses = {u.id: u.status for u in panel_runtime.remnawave.stream_users()}
    assert {u for u, s in statuses.items() if s == "DISABLED"} == set(ids) - failing
    assert {u for u, s in statuses.items() if s == "ACTIVE"} == failing
    # and the failed 50 are listed by id with the panel's error; the malformed 5 reported apart
    assert result.status == "completed"
    p = result.progress
    assert (p.total, p.processed, p.failed) == (10_000, 10_000, 50)
    assert result.duplicates_removed == 20 and result.invalid == 5
    user_errors = [e for e in p.errors if isinstance(e["user_id"], int) and e["user_id"] in failing]
    assert {e["user_id"] for e in user_errors} == failing
    assert all("A001" in e["error"] for e in user_errors)
    assert len(p.errors) == 55
    # with at most 600 panel calls (one per user would be 10,000), as the panel counted them
    writes = write_calls(panel)
    assert len(writes) <= 600 and len(writes) == result.calls
    applied = Counter(u for c in writes if c["status"] == 202 for u in c["ids"])
    assert set(applied) == set(ids) - failing and set(applied.values()) == {1}
    # and progress went out after every batch: in the key and as events
    assert [k["processed"] for k in key_after_batch] == list(range(50, 10_001, 50))
    final = json.loads(redis_client.get(progress_key("op-10k")) or "{}")
    assert set(final) == {"processed", "total", "failed", "errors"}
    assert (final["processed"], final["total"], final["failed"], len(final["errors"])) == (
        10_000,
        10_000,
        50,
        55,
    )
    seen = [e for e in event_log.close() if e["job_id"] == "op-10k"]  # pub/sub spans every Redis db
    running = [e["processed"] for e in seen if e["status"] == "running" and e["processed"]]
    assert running == list(range(50, 10_001, 50))
    assert seen[-1]["status"] == "completed" and seen[-1]["job_id"] == "op-10k"


def test_an_empty_list_completes_at_once(
    panel: Panel, panel_runtime: Runtime, redis_client: redis.Redis
) -> None:
    result = execute(run_of(panel_runtime), "op-empty", "delete", [], None)
    assert result.status == "completed" and result.calls == 0
    assert json.loads(redis_client.get(progress_key("op-empty")) or "{}") == {
        "processed": 0, "total": 0, "failed": 0, "errors": []
    }  # fmt: skip
    assert write_calls(panel) == []


@pytest.mark.parametrize(
    ("operation", "params", "before", "check"),
    [
        ("enable", None, {"status": "DISABLED"}, lambda u: u["status"] == "ACTIVE"),
        ("reset_traffic", None, {"userTraffic": {"usedTrafficBytes": 5_000}},
         lambda u: u["userTraffic"]["usedTrafficBytes"] == 0),
        ("delete", None, {}, None),
    ],
)  # fmt: skip
def test_each_operation_does_what_it_says(
    panel: Panel, panel_runtime: Runtime, operation: str, params: Any, before: dict[str, Any], check: Any
) -> None:
    ids = panel.add_users(*[user_spec(**before) for _ in range(120)])
    result = execute(run_of(panel_runtime), f"op-{operation}", operation, ids, params)
    assert result.status == "completed" and result.progress.failed == 0
    assert result.calls == 3  # 120 users in batches of 50
    if check is None:
        assert panel.admin("GET", "users")["total"] == 0
    else:
        assert all(check(panel.user(u)) for u in ids)


def test_delete_of_users_already_gone_is_no_error(panel: Panel, panel_runtime: Runtime) -> None:
    ids = panel.add_users(user_spec(), user_spec())
    execute(run_of(panel_runtime), "op-del-1", "delete", ids, None)
    result = execute(run_of(panel_runtime), "op-del-2", "delete", [*ids, 999_999], None)
    assert result.status == "completed" and result.progress.failed == 0 and result.progress.processed == 3


def test_extend_adds_the_days_once(panel: Panel, panel_runtime: Runtime) -> None:
    expire = datetime.now(UTC) + timedelta(days=10)
    ids = panel.add_users(*[user_spec(expire_in=timedelta(days=10)) for _ in range(60)])
    result = execute(run_of(panel_runtime), "op-extend", "extend", ids, {"days": 30})
    assert result.status == "completed"
    for user_id in ids:
        got = datetime.fromisoformat(panel.user(user_id)["expireAt"].replace("Z", "+00:00"))
        assert abs(got - (expire + timedelta(days=30))) < timedelta(minutes=1)


class Died(BaseException):
    """The worker process dying at a chosen point (nothing after it runs)."""


@pytest.mark.parametrize("applied", [True, False], ids=["after-the-call", "before-the-call"])
def test_a_batch_in_flight_at_a_crash_is_read_back_and_each_user_extended_once(
    panel: Panel, panel_runtime: Runtime, monkeypatch: pytest.MonkeyPatch, applied: bool
) -> None:
    # Given an extend whose worker died in its second batch, after (or before) the panel applied it
    from actors.bulk import users

    expire = datetime.now(UTC) + timedelta(days=10)
    ids = panel.add_users(*[user_spec(expire_in=timedelta(days=10)) for _ in range(100)])
    real_finish, real_apply = users.Journal.finish, users.apply_batch

    def finish(journal: Any, batch_no: int, **kwargs: Any) -> None:
        if batch_no == 1 and applied:
            raise Died
        real_finish(journal, batch_no, **kwargs)

    def apply(batch: Any, send: Any, **kwargs: Any) -> Any:
        if ids[50] in batch and not applied:
            raise Died
        return real_apply(batch, send, **kwargs)

    monkeypatch.setattr(users.Journal, "finish", finish)
    monkeypatch.setattr(users, "apply_batch", apply)
    with pytest.raises(Died):
        execute(run_of(panel_runtime), "op-crash", "extend", ids, {"days": 7})
    monkeypatch.undo()
    before = len(write_calls(panel))

    # When the job is delivered again
    result = execute(run_of(panel_runtime), "op-crash", "extend", ids, {"days": 7})

    # Then batch 0 is skipped; batch 1's users are read back and sent only if they were not extended
    assert result.status == "completed" and result.progress.processed == 100
    assert result.verified == (50 if applied else 0)
    assert [sorted(c["ids"]) for c in write_calls(panel)[before:]] == ([] if applied else [ids[50:]])
    for user_id in ids:  # every user extended exactly once
        got = datetime.fromisoformat(panel.user(user_id)["expireAt"].replace("Z", "+00:00"))
        assert abs(got - (expire + timedelta(days=7))) < timedelta(minutes=1)


def test_cancel_stops_after_the_current_batch(panel: Panel, panel_runtime: Runtime) -> None:
    ids = panel.add_users(*[user_spec() for _ in range(200)])
    batches: list[int] = []

    def cancel_after_two(progress: Progress) -> None:
        batches.append(progress.processed)
        if len(batches) == 2:
            raise JobCancelled("cancelled by cli:alice at 100/200")

    result = execute(run_of(panel_runtime, report=cancel_after_two), "op-cancel", "disable", ids, None)
    assert result.status == "cancelled" and result.progress.processed == 100
    assert sum(panel.user(u)["status"] == "DISABLED" for u in ids) == 100
    text = summary_text(result, "op-cancel", first_errors=5)
    assert "cancelled" in text and "not processed 100" in text


def test_a_panel_that_stays_down_stops_the_job_and_a_new_run_resumes_it(
    panel: Panel, panel_runtime: Runtime
) -> None:
    ids = panel.add_users(*[user_spec() for _ in range(150)])
    calls = 0

    def down_after_first_batch(progress: Progress) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            panel.faults(down=True)

    stopped = execute(run_of(panel_runtime, report=down_after_first_batch), "op-down", "disable", ids, None)
    assert stopped.status == "stopped" and stopped.progress.processed == 50
    assert "remnawave" in (stopped.stopped or "")
    panel.faults(down=None)
    panel_runtime.remnawave.breaker.record_success()
    resumed = execute(run_of(panel_runtime), "op-down", "disable", ids, None)
    assert resumed.status == "completed" and resumed.progress.processed == 150
    assert all(panel.user(u)["status"] == "DISABLED" for u in ids)
    assert Counter(u for c in write_calls(panel) if c["status"] == 202 for u in c["ids"])[ids[0]] == 1


def test_a_panel_refusing_the_operation_for_everyone_stops_the_job_after_one_batch(
    panel: Panel, panel_runtime: Runtime
) -> None:
    ids = panel.add_users(*[user_spec() for _ in range(200)])
    panel.faults(failing_users={"ids": ids, "code": "A001"})
    result = execute(run_of(panel_runtime), "op-refused", "disable", ids, None)
    assert result.status == "stopped" and "refused every user of batch 1" in (result.stopped or "")
    assert result.progress.processed == 50 and result.progress.failed == 50
    assert len(write_calls(panel)) <= 70


@pytest.mark.parametrize("back", ["mid-job", "after-the-last-batch"])
def test_redis_down_the_job_goes_on_and_the_progress_is_written_when_redis_returns(
    panel: Panel, panel_runtime: Runtime, private_redis: PrivateRedis, back: str
) -> None:
    ids = panel.add_users(*[user_spec() for _ in range(400)])  # 8 batches
    client = private_redis.client()
    restarted: list[threading.Thread] = []

    def outage(progress: Progress) -> None:
        if progress.processed == 100:
            private_redis.kill()
        if back == "mid-job" and progress.processed == 250:
            private_redis.start()
        if back == "after-the-last-batch" and progress.processed == 400:
            restarted.append(threading.Timer(1.5, private_redis.start))
            restarted[0].start()

    writer = ProgressWriter(client, retry_s=0)
    run = Run(panel_runtime.database, panel_runtime.remnawave, panel_runtime.settings, writer, report=outage)
    result = execute(run, "op-redis", "disable", ids, None)
    for thread in restarted:
        thread.join()
    assert result.status == "completed"
    assert all(panel.user(u)["status"] == "DISABLED" for u in ids)
    stored = json.loads(client.get(progress_key("op-redis")) or "{}")
    assert (stored["processed"], stored["total"], stored["failed"]) == (400, 400, 0)


def test_summary_lists_the_counts_and_the_first_errors() -> None:
    progress = Progress(total=100, processed=100, failed=7,
                        errors=[{"user_id": i, "error": f"A001 <boom> {i}"} for i in range(7)])  # fmt: skip
    result = Result("extend", "completed", progress, duplicates_removed=2, invalid=0, duration_s=3.21,
                    params={"days": 30})  # fmt: skip
    text = summary_text(result, "job-1", first_errors=3)
    assert "<b>Bulk operation done</b>: Extend +30 d" in text
    assert "succeeded 93 · failed 7" in text and "duplicates removed 2" in text
    assert "A001 &lt;boom&gt; 0" in text and "A001 &lt;boom&gt; 3" not in text
    assert "and 4 more" in text
