"""The log writer thread: every record written once and whole, in writes a pipe keeps whole, and
logging threads never wait on a handler lock."""

from __future__ import annotations

import io
import json
import logging
import queue
import random
import threading
from datetime import UTC, datetime
from typing import Any

from tests.fixtures.worker import wait_for
from worker_app import context
from worker_app.logging_setup import ContextFilter, JsonFormatter, LineWriter, _EnqueueRecord


class RecordingStream(io.StringIO):
    """A stream that keeps each ``write`` call apart."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


def _logger(name: str, records: queue.SimpleQueue[logging.LogRecord]) -> logging.Logger:
    log = logging.getLogger(name)
    log.propagate = False
    log.setLevel(logging.DEBUG)
    log.handlers[:] = [_EnqueueRecord(records)]
    return log


def test_every_line_is_written_once_whole_and_in_pipe_sized_writes() -> None:
    stream = RecordingStream()
    handler: logging.StreamHandler[Any] = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.setLevel(logging.INFO)
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    writer = LineWriter(records, [handler], linger_s=0.005)
    writer.start()
    log = _logger("test.line_writer", records)

    def produce(thread: int) -> None:
        for i in range(500):
            log.info("line %d of %d %s", i, thread, "é" * (i % 7))  # non-ASCII: counted in bytes
            log.debug("below the handler's level: never written")

    threads = [threading.Thread(target=produce, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    writer.stop()

    lines = stream.getvalue().splitlines()
    assert sorted(json.loads(line)["msg"].rsplit(" ", 1)[0] for line in lines) == sorted(
        f"line {i} of {t}" for t in range(8) for i in range(500)
    )
    assert all(len(w.encode()) <= LineWriter.PIPE_BUF and w.endswith("\n") for w in stream.writes)
    assert len(stream.writes) < len(lines) / 4, "lines are batched into few writes"


def test_a_line_is_written_within_the_linger_without_a_stop() -> None:
    stream = RecordingStream()
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    writer = LineWriter(records, [logging.StreamHandler(stream)], linger_s=0.01)
    writer.start()
    _logger("test.line_writer.linger", records).warning("soon")
    wait_for(lambda: stream.getvalue() == "soon\n", 5, "the line to be written")
    writer.stop()


def test_logging_does_not_wait_for_the_enqueueing_handlers_lock() -> None:
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    log = _logger("test.line_writer.lock", records)
    handler = log.handlers[0]
    assert handler.lock is not None
    with handler.lock:  # held by this thread: another thread's log call must not block on it
        done = threading.Event()
        threading.Thread(target=lambda: (log.warning("x"), done.set()), daemon=True).start()
        assert done.wait(5), "the log call waited for the handler lock"
    assert records.get_nowait().getMessage() == "x"


def test_json_timestamps_are_what_datetime_isoformat_writes() -> None:
    formatter = JsonFormatter()
    rng = random.Random(20261123)
    edges = [0.0, 0.0005, 0.0004999, 0.9994999, 0.9995, 0.9999996, 1507711430.1229994]
    samples = edges + [rng.uniform(0, 2e9) for _ in range(20_000)]
    samples += [
        rng.randrange(2 * 10**9) + rng.randrange(1000) / 1000 + rng.choice(edges[:6]) for _ in range(20_000)
    ]
    for created in samples:
        expected = datetime.fromtimestamp(created, tz=UTC).isoformat(timespec="milliseconds")
        assert formatter._timestamp(created) == expected, repr(created)


def test_the_context_fills_only_the_fields_a_call_did_not_set() -> None:
    context.bind(context.MessageContext("t-1", "send", "notifications", "m-1", 2))
    try:
        record = logging.makeLogRecord({"msg": "x", "actor": "given by extra"})
        assert ContextFilter().filter(record)
    finally:
        context.bind(None)
    assert (record.trace_id, record.actor, record.queue, record.message_id, record.attempt) == (
        "t-1", "given by extra", "notifications", "m-1", 2,
    )  # fmt: skip
    bare = logging.makeLogRecord({"msg": "outside a message"})
    assert ContextFilter().filter(bare) and not hasattr(bare, "trace_id")


def test_a_failing_filter_or_formatter_loses_only_its_own_line() -> None:
    class Unprintable:
        def __str__(self) -> str:
            raise ValueError("no text")

    def refuse_poison(record: logging.LogRecord) -> bool:
        if record.msg == "poison":
            raise RuntimeError("a filter that fails")
        return True

    stream = RecordingStream()
    handler: logging.StreamHandler[Any] = logging.StreamHandler(stream)
    handler.addFilter(refuse_poison)
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    writer = LineWriter(records, [handler], linger_s=0.001)
    writer.start()
    log = _logger("test.line_writer.broken", records)
    raise_exceptions, logging.raiseExceptions = logging.raiseExceptions, False  # handleError stays quiet
    try:
        log.warning("before")
        log.warning("%s", Unprintable())
        log.warning("poison")
        log.warning("after")
        writer.stop()
    finally:
        logging.raiseExceptions = raise_exceptions
    assert stream.getvalue() == "before\nafter\n"
