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
_URL_PASSWORD = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]+):(?P<pw>[^@\s/]+)@")


class Redactor:
    """Replaces known secret values and secret-shaped fragments with ``***``, in one pass."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        ordered = sorted({s for s in secrets if s}, key=len, reverse=True)
        alternatives = [f"(?P<url>{_URL_PASSWORD.pattern})", f"(?P<bot>{_BOT_PATH.pattern})"]
        if ordered:
            alternatives.insert(0, "(?P<secret>" + "|".join(re.escape(s) for s in ordered) + ")")
        self._pattern = re.compile("|".join(alternatives))
        # Substring checks are far cheaper than the regex; most log lines contain none of them.
        self._needles = (*ordered, "/bot", "://")

    def __call__(self, text: str) -> str:
        for needle in self._needles:  # a loop, not any(generator): this runs for every log line
            if needle in text:
                return self._pattern.sub(_mask, text)
        return text


def _mask(match: re.Match[str]) -> str:
    if match["url"] is not None:
        return f"{match['scheme']}:{MASK}@"
    if match["bot"] is not None:
        return "/bot" + MASK
    return MASK


_active = Redactor()


def install(redactor: Redactor) -> None:
    """Make ``redactor`` the process-wide one used by :func:`redact`."""
    global _active
    _active = redactor


def redact(text: str) -> str:
    """Redact ``text`` with the process-wide redactor."""
    return _active(text)
