"""What a process would otherwise print as bare text on stderr — a Python warning, a thread's
uncaught exception — is logged, so with LOG_FORMAT=json it is a JSON line too."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.fixtures.worker import ROOT

STRAY = """
import threading, warnings
import worker_app

warnings.warn("a library's warning", UserWarning)
thread = threading.Thread(target=lambda: 1 / 0, name="doomed")
thread.start()
thread.join()
"""


def test_warnings_and_uncaught_thread_exceptions_are_json_lines() -> None:
    # Given a process that imported worker_app with LOG_FORMAT=json
    # When a warning is issued and a thread dies of an exception
    env = {**os.environ, "LOG_FORMAT": "json"}
    args = [sys.executable, "-W", "default", "-c", STRAY]
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)

    # Then each is one JSON line, and nothing else is written
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stderr.splitlines() if line.strip()]
    assert done.stdout == ""
    assert [(r["logger"], r["level"]) for r in records] == [
        ("py.warnings", "WARNING"),
        ("worker_app.threads", "ERROR"),
    ]
    assert "a library's warning" in records[0]["msg"]
    assert records[1]["msg"] == "uncaught exception in thread doomed"
    assert "ZeroDivisionError" in records[1]["exc"]
