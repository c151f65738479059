"""Removes secrets from any text that leaves the process: log lines, dead-letter tracebacks, Sentry.

The Telegram token sits in the URL path (``/bot<token>/sendMessage``), so a plain ``requests``
exception message carries it; redaction by value and by the ``/bot<token>`` shape catches it
wherever it travels, including chained exceptions in a formatted traceback.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = "***"
_BOT_PATH = re.compile(r"/bot[^/\s'\"]+")
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://[^:/@\s]+):(?P<pw>[^@\s/]+)@", re.IGNORECASE)


class Redactor:
    """Replaces known secret values and secret-shaped fragments with ``***``."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        ordered = sorted({s for s in secrets if s}, key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(s) for s in ordered)) if ordered else None

    def __call__(self, text: str) -> str:
        if self._pattern is not None:
            text = self._pattern.sub(MASK, text)
        text = _BOT_PATH.sub("/bot" + MASK, text)
        return _URL_PASSWORD.sub(lambda m: f"{m['scheme']}:{MASK}@", text)


_active = Redactor()


def install(redactor: Redactor) -> None:
    """Make ``redactor`` the process-wide one used by :func:`redact`."""
    global _active
    _active = redactor


def redact(text: str) -> str:
    """Redact ``text`` with the process-wide redactor."""
    return _active(text)
