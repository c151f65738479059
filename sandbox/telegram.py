"""The fake Telegram Bot API: in-memory, thread-safe state that answers exactly as CONTRACTS.md says.

:class:`TelegramState` is transport-free: the HTTP layer (:mod:`sandbox.server`) hands it the token,
the method name and the merged parameters and writes back the :class:`ApiReply` it returns. Faults
(429s, 5xx, latency, real rate limiting) and chat states (blocked, migrated, ...) are set through
its methods, which the ``/_sandbox/`` admin endpoints and in-process tests and benchmarks call.
Handlers hold the lock only for counters and lookups, so the sandbox keeps up with >1000 sends/s.
"""

from __future__ import annotations

import http
import math
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sandbox.telegram_format import (
    BOT_FIELDS,
    CHAT_STATES,
    DEFAULT_TOKEN,
    INT_ID,
    METHODS,
    ApiError,
    ApiReply,
    chat_object,
    parse_send_message,
    rate_limited,
)

__all__ = ["DEFAULT_TOKEN", "ApiError", "ApiReply", "TelegramState"]


class _Bucket:
    """Token bucket: ``rate`` per second with a burst of ``max(1, rate)``."""

    __slots__ = ("capacity", "rate", "stamp", "tokens")

    def __init__(self, rate: float, now: float) -> None:
        self.rate, self.capacity = rate, max(1.0, rate)
        self.tokens, self.stamp = self.capacity, now

    def wait_s(self, now: float) -> float:
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate


@dataclass
class Faults:
    """Injected faults, all off by default; change them with :meth:`TelegramState.set_faults`.

    The next ``server_error_count`` sendMessage calls get ``server_error_status``; the next
    ``rate_limit_count`` get 429 (``rate_limit_retry_after``); then every ``1/rate_limit_fraction``-th
    one does (a counter starting at ``rate_limit_seed``, not random); ``global_per_s`` /
    ``per_chat_per_s`` enforce flood limits with real 429s. Every Bot API answer (getMe too) waits
    ``latency_ms`` (changing it releases the calls still waiting). ``down``: every Bot API call has
    its connection closed without an answer (the HTTP layer asks :meth:`TelegramState.drop_call`).
    """

    rate_limit_count: int = 0
    rate_limit_retry_after: int = 1
    rate_limit_fraction: float = 0.0
    rate_limit_fraction_retry_after: int = 1
    rate_limit_seed: int = 0
    server_error_count: int = 0
    server_error_status: int = 502
    latency_ms: int = 0
    global_per_s: float | None = None
    per_chat_per_s: float | None = None
    down: bool = False


class TelegramState:
    """Everything the fake Telegram remembers; every public method is thread-safe.

    ``tokens`` seeds the accepted bot tokens (``reset`` returns to them); the received log keeps
    the last ``max_received`` sends so that long benchmarks run in bounded memory.
    """

    def __init__(self, tokens: Iterable[str] = (DEFAULT_TOKEN,), *, max_received: int = 100_000) -> None:
        self._lock = threading.Lock()
        self._seed_tokens = frozenset(tokens)
        self._max_received = max_received
        self._wake = threading.Event()
        self._generation = 0  # reset counts up: a call that arrived before a reset is not logged after it
        self.reset()

    def reset(self) -> None:
        """Forget messages, chat states, faults, counters and added tokens; wake delayed handlers."""
        with self._lock:
            self._generation += 1
            self._tokens = self._seed_tokens
            self._chats: dict[int, tuple[str, int | None]] = {}
            self._faults = Faults()
            self._message_ids: dict[int, int] = {}
            self._received: deque[dict[str, Any]] = deque(maxlen=self._max_received)
            self._stats: Counter[tuple[str, int | str]] = Counter()
            self._buckets: dict[int | None, _Bucket] = {}
        self.wake_sleepers()

    def wake_sleepers(self) -> None:
        """Release handlers sleeping on injected latency (used by reset and on shutdown)."""
        self._wake.set()
        self._wake = threading.Event()

    def add_token(self, token: str) -> None:
        """Accept ``token`` as a valid bot token from now on."""
        with self._lock:
            self._tokens = self._tokens | {token}

    def mark_chat(self, chat_id: int | str, state: str | None, migrate_to_chat_id: int | None = None) -> None:
        """Make a chat answer as blocked/deactivated/kicked/not_found/migrated (``None`` clears)."""
        number = chat_object(chat_id)["id"]
        if state is not None and state not in CHAT_STATES:
            raise ValueError(f"state must be one of {sorted(CHAT_STATES)}")
        if state == "migrated" and migrate_to_chat_id is None:
            migrate_to_chat_id = int(f"-100{abs(number)}")
        with self._lock:
            if state is None:
                self._chats.pop(number, None)
            else:
                self._chats[number] = (state, migrate_to_chat_id)

    def set_faults(self, **settings: float | None) -> None:
        """Change the named :class:`Faults` fields, leaving the others as they are."""
        unknown = set(settings) - set(vars(Faults()))
        if unknown:
            raise ValueError(f"unknown fault settings: {sorted(unknown)}")
        with self._lock:
            for name, value in settings.items():
                setattr(self._faults, name, value)
            self._buckets = {}
        if "latency_ms" in settings:
            self.wake_sleepers()

    def faults(self) -> dict[str, Any]:
        """The current fault settings (counts show what is left)."""
        with self._lock:
            return dict(vars(self._faults))

    def received(self, chat_id: str | None = None) -> list[dict[str, Any]]:
        """The sendMessage calls seen (accepted or rejected), oldest first, optionally for one chat."""
        with self._lock:
            entries = list(self._received)
        return [e for e in entries if chat_id is None or str(e["chat_id"]) == chat_id]

    def stats(self) -> dict[str, Any]:
        """Call counts: total, by status code and by method."""
        with self._lock:
            counts = list(self._stats.items())
        by_status: Counter[str] = Counter()
        by_method: Counter[str] = Counter()
        for (method, status), n in counts:
            by_status[str(status)] += n
            by_method[method] += n
        return {"total": sum(by_status.values()), "by_status": by_status, "by_method": by_method}

    def drop_call(self, path: str) -> bool:
        """True (and counted as ``dropped``) when the ``down`` fault is on: the HTTP layer then closes
        the connection of the Bot API call to ``path`` without answering it."""
        if not self._faults.down:
            return False
        name = path.split("?", 1)[0].rsplit("/", 1)[-1]
        with self._lock:
            self._stats[(METHODS.get(name.lower(), name), "dropped")] += 1
        return True

    def call(
        self, token: str, method: str, params: Mapping[str, Any], request_id: str | None = None
    ) -> ApiReply:
        """Answer one Bot API call (``method`` in any case) exactly as Telegram would."""
        arrived_at, generation = time.time(), self._generation
        self._sleep_latency()
        name = METHODS.get(method.lower())
        if token not in self._tokens:
            reply = ApiError(401, "Unauthorized: invalid token specified").reply()
        elif name is None:
            reply = ApiError(404, "Not Found: method not found").reply()
        elif name == "getMe":
            reply = ApiReply(200, {"ok": True, "result": bot_user(token)})
        else:
            reply = self._send_message(token, params)
        self._note(name or method, params, reply, request_id, arrived_at=arrived_at, generation=generation)
        return reply

    def _sleep_latency(self) -> None:
        latency_ms = self._faults.latency_ms
        if latency_ms:
            self._wake.wait(latency_ms / 1000)

    def _send_message(self, token: str, params: Mapping[str, Any]) -> ApiReply:
        try:
            self._injected_fault()
            chat, text = parse_send_message(params)
            message_id = self._deliver(chat["id"])
        except ApiError as e:
            return e.reply()
        message = {"message_id": message_id, "from": bot_user(token), "chat": chat, "date": int(time.time())}
        return ApiReply(200, {"ok": True, "result": {**message, "text": text}})

    def _injected_fault(self) -> None:
        with self._lock:
            faults = self._faults
            if faults.server_error_count > 0:
                faults.server_error_count -= 1
                status = faults.server_error_status
                raise ApiError(status, http.HTTPStatus(status).phrase)
            if faults.rate_limit_count > 0:
                faults.rate_limit_count -= 1
                raise rate_limited(faults.rate_limit_retry_after)
            if faults.rate_limit_fraction > 0:
                faults.rate_limit_seed += 1
                calls, fraction = faults.rate_limit_seed, faults.rate_limit_fraction
                if int(calls * fraction) > int((calls - 1) * fraction):
                    raise rate_limited(faults.rate_limit_fraction_retry_after)

    def _deliver(self, chat_id: int) -> int:
        with self._lock:
            self._check_limits(chat_id)
            if chat_id in self._chats:
                state, migrate_to = self._chats[chat_id]
                status, description = CHAT_STATES[state]
                moved = {"migrate_to_chat_id": migrate_to} if migrate_to else {}
                raise ApiError(status, description, **moved)
            message_id = self._message_ids.get(chat_id, 0) + 1
            self._message_ids[chat_id] = message_id
            return message_id

    def _check_limits(self, chat_id: int) -> None:
        faults, now = self._faults, time.monotonic()
        rates = ((None, faults.global_per_s), (chat_id, faults.per_chat_per_s))
        buckets = [self._bucket(key, rate, now) for key, rate in rates if rate]
        wait_s = max((bucket.wait_s(now) for bucket in buckets), default=0.0)
        if wait_s > 0:
            raise rate_limited(max(1, math.ceil(wait_s)))
        for bucket in buckets:
            bucket.tokens -= 1

    def _bucket(self, key: int | None, rate: float, now: float) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(rate, now)
        return bucket

    def _note(
        self,
        method: str,
        params: Mapping[str, Any],
        reply: ApiReply,
        request_id: str | None,
        *,
        arrived_at: float,
        generation: int,
    ) -> None:
        entry = _received_entry(params, reply, request_id, arrived_at) if method == "sendMessage" else None
        with self._lock:
            if generation != self._generation:
                return  # it arrived before a reset (a test's late call must not show in the next test)
            self._stats[(method, reply.status)] += 1
            if entry is not None:
                self._received.append(entry)


def bot_user(token: str) -> dict[str, Any]:
    """The bot's User object; its id is the token's numeric prefix, as with real tokens."""
    prefix = token.split(":", 1)[0]
    return {"id": int(prefix) if prefix.isdigit() else 100000, **BOT_FIELDS}


def _received_entry(
    params: Mapping[str, Any], reply: ApiReply, request_id: str | None, arrived_at: float
) -> dict[str, Any]:
    chat_id = params.get("chat_id")
    if isinstance(chat_id, str) and INT_ID.fullmatch(chat_id.strip()):
        chat_id = int(chat_id)
    result = reply.body.get("result") or {}
    return {
        "chat_id": chat_id,
        "text": params.get("text"),
        "parse_mode": params.get("parse_mode"),
        "disable_notification": str(params.get("disable_notification", "")).lower() in ("true", "1"),
        "status": reply.status,
        "description": reply.body.get("description"),
        "message_id": result.get("message_id"),
        "received_at": time.time(),
        "arrived_at": arrived_at,
        "request_id": request_id,
    }
