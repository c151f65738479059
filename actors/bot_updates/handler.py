"""The user's update handler, named by ``BOT_UPDATE_HANDLER=package.module:callable``.

It is called as ``handler(update, trace_id)`` with the update as Telegram sent it (a dict) and the
update's trace id (``tg-<update_id>``, also bound to every log line and sent as ``X-Request-ID`` on
the worker's own HTTP calls). A plain function runs on the worker thread. An ``async`` one (aiogram:
``await dp.feed_update(bot, Update.model_validate(update))``) runs on the process's one event loop, a
daemon thread started on first use, so the handler's own async resources (aiogram's ``Bot`` session,
an HTTP client) live on a single loop for the life of the process; the worker thread waits for the
coroutine and cancels it if the attempt is interrupted (its time limit, the worker stopping).
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from worker_app import context
from worker_app.errors import PermanentError

Handler = Callable[[dict[str, Any], str], Any]


class HandlerNotConfigured(PermanentError):
    """BOT_UPDATE_HANDLER is unset or does not name a callable: the update is dead-lettered at once
    (replay it once the setting is right)."""


def load_handler(path: str | None) -> Handler:
    """The callable at ``path`` (``package.module:attribute``, attributes may be dotted)."""
    if not path:
        raise HandlerNotConfigured("BOT_UPDATE_HANDLER is not set (package.module:callable)")
    module_name, _, attribute = path.partition(":")
    try:
        found: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError) as e:
        raise HandlerNotConfigured(f"BOT_UPDATE_HANDLER={path}: {type(e).__name__}: {e}") from e
    if not callable(found):
        raise HandlerNotConfigured(f"BOT_UPDATE_HANDLER={path} is a {type(found).__name__}, not callable")
    return found  # type: ignore[no-any-return]


class EventLoopThread:
    """One asyncio loop on a daemon thread, for the coroutines of every worker thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None

    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._loop.is_closed():
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                threading.Thread(target=run, name="bot-updates-loop", daemon=True).start()
                ready.wait()
                self._loop = loop
            return self._loop

    def run(self, coroutine: Any) -> Any:
        """Run ``coroutine`` on the loop and wait for its result; an exception while waiting (the
        message's time limit) cancels it."""
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coroutine, self.loop())
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise


_LOOP = EventLoopThread()


def call_handler(handler: Handler, update: dict[str, Any], trace_id: str) -> Any:
    """``handler(update, trace_id)``, awaited on the shared loop when it returns an awaitable."""
    result = handler(update, trace_id)
    if inspect.isawaitable(result):
        return _LOOP.run(_awaited(result, context.current()))
    return result


async def _awaited(awaitable: Any, bound: context.MessageContext | None) -> Any:
    context.bind(bound)  # the task's own copy of the context: the update's trace id in its log lines
    return await awaitable
