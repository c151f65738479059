"""One update through ``handle_update``: in-place retries, dead letter, de-duplication, async handlers
(real Redis; no broker: the actor is a thin shell over this)."""

from __future__ import annotations

from typing import Any

import pytest
import redis as redis_lib
from redis.backoff import NoBackoff
from redis.retry import Retry

from actors.bot_updates.handler import HandlerNotConfigured, load_handler
from actors.bot_updates.process import Seen, handle_update
from tests import bot_handlers
from worker_app import context
from worker_app.errors import BadMessage, PermanentError, RateLimited, UpstreamUnavailable


@pytest.fixture(autouse=True)
def _prefix(monkeypatch: pytest.MonkeyPatch, redis_client: redis_lib.Redis) -> None:
    monkeypatch.setenv("BOT_TEST_PREFIX", "t")


def update(update_id: int, chat: int = 5) -> dict[str, Any]:
    return {"update_id": update_id, "message": {"message_id": update_id, "chat": {"id": chat}, "text": "x"}}


def run(u: dict[str, Any], handler: Any = bot_handlers.record, **kw: Any) -> tuple[Any, list[float]]:
    sleeps: list[float] = []
    kw.setdefault("retries", 3)
    kw.setdefault("backoff_ms", 100)
    handled = handle_update(u, f"tg-{u['update_id']}", handler=handler, sleep=sleeps.append, **kw)
    return handled, sleeps


def test_an_update_that_fails_twice_is_retried_in_place_with_backoff(redis_client: redis_lib.Redis) -> None:
    handled, sleeps = run(update(100))  # every 50th update fails on its first two attempts
    assert (handled.attempts, handled.chat, handled.duplicate) == (3, "chat:5", False)
    assert sleeps == [0.1, 0.2]
    assert redis_client.lrange("t:log:chat:5", 0, -1) == ["100"]


def test_an_update_failing_every_time_raises_after_its_retries(redis_client: redis_lib.Redis) -> None:
    with pytest.raises(UpstreamUnavailable, match="always fails"):
        run(update(7), bot_handlers.always_fails, retries=3, backoff_ms=50)
    assert redis_client.hget("t:attempts", "7") == "4"  # the first attempt and 3 retries


def test_a_permanent_error_is_not_retried() -> None:
    calls: list[int] = []

    def refuses(u: dict[str, Any], trace_id: str) -> None:
        calls.append(u["update_id"])
        raise PermanentError("chat was deleted")

    with pytest.raises(PermanentError):
        run(update(8), refuses)
    assert calls == [8]


def test_a_rate_limited_attempt_waits_at_least_the_retry_after() -> None:
    attempts: list[int] = []

    def throttled(u: dict[str, Any], trace_id: str) -> None:
        attempts.append(1)
        if len(attempts) == 1:
            raise RateLimited("429", retry_after_s=3)

    handled, sleeps = run(update(9), throttled, backoff_ms=100)
    assert handled.attempts == 2 and sleeps == [3]


def test_an_update_handled_already_is_skipped(redis_client: redis_lib.Redis) -> None:
    seen = Seen(redis_client, ttl_s=600)
    first, _ = run(update(11), seen=seen)
    again, _ = run(update(11), seen=seen)
    assert (first.attempts, again.attempts, again.duplicate) == (1, 0, True)
    assert redis_client.lrange("t:log:chat:5", 0, -1) == ["11"]
    assert 0 < redis_client.ttl("cybervpn:bot_updates:done:11") <= 600


def test_redis_down_handles_the_update_without_de_duplication() -> None:
    calls: list[int] = []
    # nothing listens there; no client-side retries
    down = redis_lib.Redis(host="127.0.0.1", port=1, retry=Retry(NoBackoff(), 0))
    handled, _ = run(update(12), lambda u, t: calls.append(u["update_id"]), seen=Seen(down, ttl_s=60))
    assert handled.attempts == 1 and calls == [12]


def test_an_async_handler_runs_on_the_loop_with_the_update_trace_id(redis_client: redis_lib.Redis) -> None:
    context.bind(context.MessageContext(trace_id="tg-13"))
    try:
        handled, _ = run(update(13), bot_handlers.record_async)
    finally:
        context.bind(None)
    assert handled.attempts == 1
    assert redis_client.hget("t:trace", "13") == "tg-13|tg-13"  # passed in, and bound inside the coroutine


def test_an_async_handler_failure_is_retried_like_a_sync_one(redis_client: redis_lib.Redis) -> None:
    handled, sleeps = run(update(150), bot_handlers.record_async)
    assert handled.attempts == 3 and len(sleeps) == 2


@pytest.mark.parametrize("bad", [[1, 2], {"message": {}}, {"update_id": "12"}, {"update_id": True}])
def test_anything_but_an_update_is_a_bad_message(bad: Any) -> None:
    with pytest.raises(BadMessage):
        handle_update(bad, "t", handler=bot_handlers.record, retries=0, backoff_ms=0)


@pytest.mark.parametrize(
    ("path", "error"),
    [
        (None, "BOT_UPDATE_HANDLER is not set"),
        ("tests.no_such_module:handle", "ModuleNotFoundError"),
        ("tests.bot_handlers:missing", "AttributeError"),
        ("tests.bot_handlers:FAIL_EVERY", "is a int, not callable"),
    ],
)
def test_a_wrong_handler_setting_is_named(path: str | None, error: str) -> None:
    with pytest.raises(HandlerNotConfigured, match=error) as caught:
        load_handler(path)
    assert isinstance(caught.value, PermanentError)  # the update is dead-lettered at once, replayable


def test_the_demo_handler_is_loadable() -> None:
    from actors.bot_updates.example import handle, reply_to

    assert load_handler("actors.bot_updates.example:handle") is handle
    assert reply_to(update(1)) == (5, "x")
    assert reply_to({"update_id": 1, "message": {"chat": {"id": 5}, "text": "/start"}})[1].startswith("Hello")  # type: ignore[index]
    assert reply_to({"update_id": 1, "callback_query": {}}) is None
