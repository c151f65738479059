"""The bot-updates benchmark's handler (``BOT_UPDATE_HANDLER=bench.apps.bot_handler:record``): one
Redis ``RPUSH`` per update of ``<update_id> <chat> <unix time>``, the handler's own log that the
benchmark reads ordering, loss, duplicates and end-to-end latency from."""

from __future__ import annotations

import os
import time
from typing import Any

from actors.bot_updates.routing import chat_key
from worker_app.runtime import get_runtime

LOG_KEY = os.environ.get("BENCH_BOT_LOG_KEY", "bench:bot:ran")


def record(update: dict[str, Any], trace_id: str) -> None:
    get_runtime().redis.rpush(LOG_KEY, f"{update['update_id']} {chat_key(update)} {time.time():.4f}")
