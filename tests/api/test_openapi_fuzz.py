"""The CI gate over the whole OpenAPI document: schemathesis against a real ``worker-app serve``.

Deterministic (``--generation-deterministic``): the same cases on every run. Every operation is
called with the token; the checks are that no answer is a 5xx, that every status, content type,
header and body matches the document, that every request the document calls invalid is refused,
and that an undeclared method gets a 405 with ``Allow``. The first run has every dependency up
(≥ 2,000 cases); the second has RabbitMQ unreachable and the third PostgreSQL and Redis, where
the only 5xx allowed is the documented 503 that names the dependency.

Not checked: ``positive_data_acceptance`` — an actor's declared checks go beyond what its argument
schema can say (a text's length after its HTML markup, a text of spaces only, one argument given
both by position and by name), so a schema-valid call can rightly be refused with 422.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.fixtures.api import serving
from tests.fixtures.ports import free_port

TOKEN = "fuzz-test-token-123"
#: The webhook's secret, given to schemathesis too, so its cases get past the secret to the body checks.
TELEGRAM_SECRET = "fuzz-telegram-secret"
ST = str(Path(sys.executable).parent / "st")
CHECKS = ",".join(
    (
        "not_a_server_error", "status_code_conformance", "content_type_conformance",
        "response_schema_conformance", "response_headers_conformance", "negative_data_rejection",
        "unsupported_method",
    )
)  # fmt: skip
MIN_CASES = 2000


def fuzz(base: str, max_examples: int, tmp_path: Path, name: str, *, allow_503: bool = False) -> int:
    """Run schemathesis against ``base``; fail with its report unless every check passed. Returns the
    number of generated cases."""
    checks = CHECKS if not allow_503 else CHECKS.replace("not_a_server_error,", "")
    report = tmp_path / f"{name}.txt"
    done = subprocess.run(
        [
            ST, "run", f"{base}/api/v1/openapi.json", "--header", f"Authorization: Bearer {TOKEN}",
            "--header", f"X-Telegram-Bot-Api-Secret-Token: {TELEGRAM_SECRET}",
            "--checks", checks, "--generation-deterministic", "--max-examples", str(max_examples),
            "--workers", "1", "--no-color",
        ],
        capture_output=True, text=True, timeout=900, check=False, cwd=tmp_path,
    )  # fmt: skip
    report.write_text(done.stdout + done.stderr)
    assert done.returncode == 0, f"schemathesis found failures ({name}):\n{done.stdout[-6000:]}"
    generated = re.search(r"(\d+) generated", done.stdout)
    assert generated, f"no case count in schemathesis' report ({report})"
    return int(generated.group(1))


@pytest.mark.rabbitmq
@pytest.mark.timeout(600)  # ~6,500 cases: 75-90 s on a quiet machine, far more on a loaded one
def test_every_operation_holds_to_the_document_with_every_dependency_up(
    no_leftover_messages: None, migrated_database: str, tmp_path: Path
) -> None:
    env = {"API_TOKEN": TOKEN, "TELEGRAM_WEBHOOK_SECRET": TELEGRAM_SECRET}
    with serving(tmp_path / "serve.log", env) as base:
        cases = fuzz(base, 250, tmp_path, "up")
    print(f"\n[schemathesis] {cases} generated cases, every dependency up: 0 failures")
    assert cases >= MIN_CASES
    log = (tmp_path / "serve.log").read_text()
    assert "Traceback" not in log, log[-4000:]


@pytest.mark.rabbitmq
@pytest.mark.parametrize(
    ("down", "dependency"),
    [("rabbitmq", "RabbitMQ"), ("postgresql+redis", "PostgreSQL")],
)
def test_with_a_dependency_unreachable_the_answer_is_a_documented_503_naming_it(
    rabbitmq_vhost: str, migrated_database: str, tmp_path: Path, down: str, dependency: str
) -> None:
    closed = f"127.0.0.1:{free_port()}"
    env = {"API_TOKEN": TOKEN, "TELEGRAM_WEBHOOK_SECRET": TELEGRAM_SECRET}
    if down == "rabbitmq":
        env |= {
            "RABBITMQ_URL": f"amqp://guest:guest@{closed}/x",
            "RABBITMQ_MANAGEMENT_URL": f"http://{closed}",
        }
    else:
        env |= {
            "DATABASE_URL": f"postgresql+psycopg://postgres@{closed}/x",
            "REDIS_URL": f"redis://{closed}/0",
        }
    with serving(tmp_path / "serve.log", env) as base:
        cases = fuzz(base, 40, tmp_path, down, allow_503=True)
        path = "/api/v1/queues" if down == "rabbitmq" else "/api/v1/dead-letters"
        answer = requests.get(f"{base}{path}", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    print(f"\n[schemathesis] {cases} generated cases, {down} unreachable: 0 failures")
    log = (tmp_path / "serve.log").read_text()
    assert " 500 " not in log and "Traceback" not in log, log[-4000:]
    assert answer.status_code == 503 and answer.json()["error"] == f"{dependency} is unavailable"
