"""Logging: JSON lines (default) or text for a terminal; message context on every record; secrets
redacted from every line, including tracebacks.

Under ``dramatiq worker_app`` the CLI has already installed a handler writing to its pipe when
``worker_app`` is imported; its formatter is replaced so that the pipe carries our lines.
"""

from __future__ import annotations

import atexit
import json
import logging
import logging.handlers
import queue
import sys
from datetime import UTC, datetime
from typing import Any

from worker_app import context
from worker_app.redaction import redact

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
_CONTEXT_FIELDS = ("trace_id", "actor", "queue", "message_id", "attempt")


class ContextFilter(logging.Filter):
    """Copies the current message context onto each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = context.current()
        if ctx is not None:
            for name in _CONTEXT_FIELDS:
                if not hasattr(record, name):
                    setattr(record, name, getattr(ctx, name))
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, the context fields and any ``extra``."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
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
        return redact(json.dumps(data, default=str))


class TextFormatter(logging.Formatter):
    """Human-readable lines with the trace id and actor when there is one."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s%(ctx)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        trace = getattr(record, "trace_id", None)
        actor = getattr(record, "actor", None)
        record.ctx = f" [{actor} {trace[:8]}]" if trace and actor else ""
        return redact(super().format(record))


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
    """Hands records to the writer thread as they are: formatting happens there, not under a
    handler lock contended by every worker thread (the cost of a log line per message grew
    several-fold with 8 threads fighting over that lock)."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record


_listener: logging.handlers.QueueListener | None = None


def _write_from_one_thread(root: logging.Logger) -> None:
    """Move the root handlers behind a queue drained by one thread (flushed at exit)."""
    global _listener
    if _listener is not None:
        return
    handlers = [h for h in root.handlers if type(h) is logging.StreamHandler]  # not pytest's, not Sentry's
    if not handlers:
        return
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    _listener = logging.handlers.QueueListener(records, *handlers, respect_handler_level=True)
    for handler in handlers:
        root.removeHandler(handler)
    enqueue = _EnqueueRecord(records)
    enqueue.addFilter(ContextFilter())  # contextvars are read on the producing thread
    root.addHandler(enqueue)
    _listener.start()
    atexit.register(_listener.stop)


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
        if not any(isinstance(f, ContextFilter) for f in handler.filters):
            handler.addFilter(ContextFilter())
    _write_from_one_thread(root)
    root.setLevel(level)
    for noisy in ("pika", "urllib3", "alembic"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
