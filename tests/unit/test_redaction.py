"""Secrets never leave the process in text: log lines, tracebacks, dead letters."""

from __future__ import annotations

import logging

import pytest

from worker_app.redaction import Redactor


def test_known_secrets_bot_paths_and_url_passwords_are_masked() -> None:
    redact = Redactor(["777:very-secret-token"])
    text = (
        "POST https://api.telegram.org/bot777:very-secret-token/sendMessage failed; "
        "token=777:very-secret-token; db=postgresql://app:hunter22@db/cybervpn; "
        "other=https://api.telegram.org/bot999:unknown-token/getMe"
    )
    assert redact(text) == (
        "POST https://api.telegram.org/bot***/sendMessage failed; token=***; "
        "db=postgresql://app:***@db/cybervpn; other=https://api.telegram.org/bot***/getMe"
    )


def test_log_records_are_redacted_for_every_handler_including_tracebacks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given the process-wide redaction (installed by import worker_app) and the test token
    import worker_app  # noqa: F401

    token = "424242:test-only-secret-token"

    # When a message and an exception carrying the token are logged
    try:
        raise ConnectionError(f"GET http://x/bot{token}/getMe refused")
    except ConnectionError:
        logging.getLogger("test").exception("call with %s failed", token)

    # Then pytest's own handler (not ours) never sees it
    assert token not in caplog.text
    assert "bot***/getMe" in caplog.text
