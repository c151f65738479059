"""Update handlers for the bot_updates tests (``BOT_UPDATE_HANDLER=tests.bot_handlers:<name>``).

Each records what it saw in Redis, under the run's prefix ``BOT_TEST_PREFIX``:

* ``<prefix>:log:<chat key>`` — the update ids of the chat, in the order the handler ran them (the
  handler's own log: ordering and duplicates are read from it);
* ``<prefix>:attempts`` — attempts per update id (``BOT_TEST_POISON`` ids fail every one);
* ``<prefix>:trace`` — the trace id each update ran with, and the context's trace id seen inside;
* ``<prefix>:ran_at`` — each run as ``<unix seconds>|<pid>|<chat key>``: who ran which chat when, for
  the recovery time of the shards a killed worker held.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from actors.bot_updates.routing import chat_key
from worker_app import context
from worker_app.errors import UpstreamUnavailable
from worker_app.runtime import get_runtime

#: Every FAIL_EVERY-th update fails on its first FAIL_TIMES attempts (0: none fail).
FAIL_EVERY = int(os.environ.get("BOT_TEST_FAIL_EVERY", "50"))
FAIL_TIMES = int(os.environ.get("BOT_TEST_FAIL_TIMES", "2"))
#: Update ids that fail on every attempt (comma-separated).
POISON = {int(n) for n in os.environ.get("BOT_TEST_POISON", "").split(",") if n}


def _prefix() -> str:
    return os.environ.get("BOT_TEST_PREFIX", "bottest")


def record(update: dict[str, Any], trace_id: str) -> None:
    """Fail the chosen updates FAIL_TIMES times, then log (chat, update_id)."""
    client = get_runtime().redis
    prefix = _prefix()
    update_id = int(update["update_id"])
    attempts = client.hincrby(f"{prefix}:attempts", str(update_id), 1)
    if update_id in POISON:
        raise UpstreamUnavailable(f"update {update_id} is poison (attempt {attempts})")
    if FAIL_EVERY and update_id % FAIL_EVERY == 0 and attempts <= FAIL_TIMES:
        raise UpstreamUnavailable(f"update {update_id} fails on purpose (attempt {attempts})")
    pipe = client.pipeline(transaction=False)
    pipe.hset(f"{prefix}:trace", str(update_id), f"{trace_id}|{context.current_trace_id()}")
    pipe.rpush(f"{prefix}:log:{chat_key(update)}", update_id)
    pipe.rpush(f"{prefix}:ran_at", f"{time.time():.3f}|{os.getpid()}|{chat_key(update)}")
    pipe.execute()


async def record_async(update: dict[str, Any], trace_id: str) -> None:
    """:func:`record`, awaited on the worker's event loop."""
    await asyncio.sleep(0)
    record(update, trace_id)


def always_fails(update: dict[str, Any], trace_id: str) -> None:
    """Counts its attempts, then fails (the update must be dead-lettered after the retries)."""
    get_runtime().redis.hincrby(f"{_prefix()}:attempts", str(update["update_id"]), 1)
    raise UpstreamUnavailable(f"update {update['update_id']} always fails")
