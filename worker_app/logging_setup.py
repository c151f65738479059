"""Logging: JSON lines (default) or text for a terminal; message context on every record; secrets
redacted from every line, including tracebacks.

Under ``dramatiq worker_app`` the CLI has already installed a handler writing to its pipe when
``worker_app`` is imported; its formatter is replaced so that the pipe carries our lines. The
``dramatiq`` main process never imports ``worker_app``, so its own lines stay in Dramatiq's text
format unless it is run by ``worker-app worker`` (:func:`worker_app.bootstrap.run_dramatiq`).
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import math
import multiprocessing.util
import queue
import re
import sys
import threading
import time
from contextlib import nullcontext, suppress
from datetime import UTC, datetime
from typing import Any

from worker_app import context
from worker_app.redaction import redact

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
_CONTEXT_FIELDS = context.MessageContext._fields  # trace_id, actor, queue, message_id, attempt


class ContextFilter(logging.Filter):
    """Copies the current message context onto each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = context.current()
        if ctx is not None:
            fields = vars(record)
            for name, value in zip(_CONTEXT_FIELDS, ctx, strict=True):
                fields.setdefault(name, value)  # a field the call's ``extra`` set is kept
        return True


_encode_json = json.JSONEncoder(default=str).encode  # json.dumps(default=...) builds an encoder per call


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, the context fields and any ``extra``."""

    _second: tuple[int, str] = (-1, "")  # the last whole second formatted, and its text

    def _timestamp(self, created: float) -> str:
        """``created`` as ISO 8601 in UTC to the millisecond, as ``datetime.isoformat`` writes it;
        the date and time of day are formatted once per second."""
        fraction, whole = math.modf(created)  # split and rounded as datetime.fromtimestamp does
        micros = round(fraction * 1_000_000)
        second = int(whole) + micros // 1_000_000
        micros %= 1_000_000
        cached, text = self._second
        if cached != second:
            text = datetime.fromtimestamp(second, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
            self._second = (second, text)
        return f"{text}.{micros // 1000:03d}+00:00"

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": self._timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "pid": record.process,
        }
        for name, value in vars(record).items():
            if name not in _STANDARD and value is not None and not name.startswith("_"):
                data[name] = value
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return redact(_encode_json(data))


class TextFormatter(logging.Formatter):
    """Human-readable lines with the trace id and actor when there is one."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s%(ctx)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        trace = getattr(record, "trace_id", None)
        actor = getattr(record, "actor", None)
        record.ctx = f" [{actor} {trace[:8]}]" if trace and actor else ""
        return redact(super().format(record))


_TERMINAL_CODES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")


class PlainText(logging.Filter):
    """Strips terminal colour codes from a record's message.

    werkzeug colours the request line of its access log by status (404 yellow, 5xx magenta…)
    whether or not its stream is a terminal: a JSON ``msg`` or a log file must hold plain text."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "\x1b" in message:
            record.msg, record.args = _TERMINAL_CODES.sub("", message), ()
        return True


def install_redacting_records() -> None:
    """Redact every log record as it is created, so that no handler (pytest's, Sentry's
    breadcrumbs, a third party's) ever sees a secret: the message is rendered and redacted, and
    any exception is formatted and redacted into ``exc_text``."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "redacting", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            record.msg, record.args = redact(record.getMessage()), ()
        except (TypeError, ValueError):
            record.msg = redact(str(record.msg))
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(_EXC_FORMATTER.formatException(record.exc_info))
        return record

    factory.redacting = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


_EXC_FORMATTER = logging.Formatter()


def _bypass_dramatiq_pipe(root: logging.Logger) -> None:
    """Write log lines straight to the inherited stderr instead of through ``dramatiq``'s pipe.

    The ``dramatiq`` CLI sends every worker log line through a pipe that its main process copies
    to stderr: a second process touching every line, which costs more CPU than producing the line.
    Each of our lines is written with one ``write`` (line-buffered stream), which the kernel keeps
    whole for lines under 4 KiB on a pipe and for any line on a file or terminal. With
    ``--log-file`` the pipe is kept, since only the main process writes that file.
    """
    if type(sys.stderr).__name__ != "StreamablePipe" or "--log-file" in sys.argv:
        return
    stderr = open(2, "w", buffering=1, encoding="utf-8", closefd=False)  # noqa: SIM115 (lives with the process)
    for handler in root.handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stderr:
            handler.setStream(stderr)


class _EnqueueRecord(logging.handlers.QueueHandler):
    """Hands records to the writer thread as they are: formatting happens there, not on the
    logging thread.

    No handler lock is taken either: the queue is thread-safe, and a lock held by eight worker
    threads at INFO (one record per message each) made a lock convoy with the GIL: a thread that
    lost the GIL while holding it stalled the others on the lock, and the worker threads' CPU per
    message rose by 60-70 µs instead of the ~8 µs a record costs (bench/README.md)."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record

    def handle(self, record: logging.LogRecord) -> bool:
        if not self.filter(record):
            return False
        try:
            self.enqueue(record)
        except Exception:
            self.handleError(record)
        return True


_STOP = logging.makeLogRecord({"msg": "stop the line writer"})


class LineWriter:
    """The one thread that formats and writes every log record of the process, in batches.

    Writing one record at a time costs a ``write`` system call per line, and at INFO there is a line
    per message. This thread lingers ``linger_s`` after the first record
    of a batch, takes whatever has queued meanwhile, and writes the batch's lines in as few
    ``write`` calls as fit in ``PIPE_BUF`` (4 KiB): a pipe shared by several worker processes keeps
    each such write whole, so lines from different processes never interleave mid-line. A line is
    written at most ``linger_s`` after it was logged; :meth:`stop` (at exit) writes what is left.
    """

    PIPE_BUF = 4096

    def __init__(
        self, records: queue.SimpleQueue[logging.LogRecord], handlers: list[logging.StreamHandler[Any]],
        linger_s: float = 0.02,
    ) -> None:  # fmt: skip
        self.records = records
        self.handlers = handlers
        self.linger_s = linger_s
        self._thread = threading.Thread(target=self._run, name="log-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Write every record logged so far, then end the thread."""
        if self._thread.is_alive():
            self.records.put(_STOP)
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            batch = [self.records.get()]
            if batch[0] is not _STOP:
                time.sleep(self.linger_s)
            with suppress(queue.Empty):
                while True:
                    batch.append(self.records.get_nowait())
            stopping = any(record is _STOP for record in batch)
            self.write([record for record in batch if record is not _STOP])
            if stopping:
                return

    def write(self, batch: list[logging.LogRecord]) -> None:
        """Format ``batch`` for each handler and write it in chunks of whole lines."""
        for handler in self.handlers:
            chunks: list[str] = []
            chunk: list[str] = []
            size = 0
            for record in batch:
                if record.levelno < handler.level:
                    continue
                try:  # a failing filter or formatter loses this line, never the thread
                    if not handler.filter(record):
                        continue
                    line = handler.format(record) + handler.terminator
                except Exception:
                    handler.handleError(record)
                    continue
                length = len(line) if line.isascii() else len(line.encode())
                if chunk and size + length > self.PIPE_BUF:
                    chunks.append("".join(chunk))
                    chunk, size = [], 0
                chunk.append(line)
                size += length
            if chunk:
                chunks.append("".join(chunk))
            if chunks:
                self._emit(handler, chunks, batch[-1])

    @staticmethod
    def _emit(handler: logging.StreamHandler[Any], chunks: list[str], last: logging.LogRecord) -> None:
        with handler.lock or nullcontext():
            try:
                for text in chunks:
                    handler.stream.write(text)
                handler.flush()
            except Exception:
                handler.handleError(last)  # what logging does when a stream fails: report, go on


_writer: LineWriter | None = None


def _write_from_one_thread(root: logging.Logger) -> None:
    """Move the root handlers behind a queue drained by one thread (flushed at exit)."""
    global _writer
    if _writer is not None:
        return
    handlers = [h for h in root.handlers if type(h) is logging.StreamHandler]  # not pytest's, not Sentry's
    if not handlers:
        return
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    _writer = LineWriter(records, handlers)
    for handler in handlers:
        root.removeHandler(handler)
    root.addHandler(_EnqueueRecord(records))
    _writer.start()
    # Not atexit: a multiprocessing child (a ``dramatiq`` worker or fork process) ends with
    # ``os._exit`` after running these finalizers only, and its last lines ("Worker has been shut
    # down.") would be lost. The main process runs them at exit too.
    multiprocessing.util.Finalize(None, _writer.stop, exitpriority=-100)


def configure_logging(level: str, fmt: str) -> None:
    """Install our formatter and context filter on the root logger's handlers (adding one if none),
    and have one thread write them."""
    install_redacting_records()
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler(sys.stderr))
    _bypass_dramatiq_pipe(root)
    formatter: logging.Formatter = JsonFormatter() if fmt == "json" else TextFormatter()
    for handler in root.handlers:
        handler.setFormatter(formatter)
    _write_from_one_thread(root)
    # The context is read where the record is made (contextvars belong to the logging thread): by
    # the handlers left on the root, the writer's queue among them, not by those behind the queue.
    for handler in root.handlers:
        if not any(isinstance(f, ContextFilter) for f in handler.filters):
            handler.addFilter(ContextFilter())
    root.setLevel(level)
    for noisy in ("pika", "urllib3", "alembic"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    _log_stray_output()


def _log_stray_output() -> None:
    """Send what would otherwise be written to stderr as bare text through logging: werkzeug's
    coloured access lines, Python warnings, and a thread's uncaught exception (unless a hook other
    than Python's own, such as pytest's, is installed)."""
    werkzeug = logging.getLogger("werkzeug")
    if not any(isinstance(f, PlainText) for f in werkzeug.filters):
        werkzeug.addFilter(PlainText())
    logging.captureWarnings(True)
    if threading.excepthook is threading.__excepthook__:
        threading.excepthook = _log_thread_exception


def _log_thread_exception(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else "?"
    log = logging.getLogger("worker_app.threads")
    log.error("uncaught exception in thread %s", name, exc_info=args.exc_value)
