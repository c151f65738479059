"""``worker-app`` fails in one line with a documented exit code, never a traceback (issue 13's findings,
each run as the real command): 2 bad input, 3 a dependency unreachable, 1 the operation failed."""

from __future__ import annotations

import os
import subprocess

import pytest
import sqlalchemy as sa

from tests.fixtures.api import WORKER_APP
from tests.fixtures.ports import free_port

CLOSED = f"127.0.0.1:{free_port()}"


def run(*args: str, stdin: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [WORKER_APP, *args], env={**os.environ, **env}, input=stdin, capture_output=True, text=True,
        timeout=90, check=False,
    )  # fmt: skip


def assert_one_line(done: subprocess.CompletedProcess[str], code: int, text: str) -> None:
    output = done.stdout + done.stderr
    assert done.returncode == code, output
    assert "Traceback" not in output, output
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    # a progress bar's label may come first (dlq replay)
    assert len(lines) in (1, 2) and text in lines[-1], output


@pytest.mark.parametrize(
    "args",
    [
        ("dlq", "list"), ("dlq", "show", "1"), ("dlq", "export"), ("jobs", "list"), ("jobs", "show", "x"),
        ("notifications", "status"), ("notifications", "send", "42", "hi"), ("schedules",),
    ],
)  # fmt: skip
def test_postgresql_unreachable_is_one_line_naming_it_and_exit_3(args: tuple[str, ...]) -> None:
    done = run(*args, DATABASE_URL=f"postgresql+psycopg://postgres@{CLOSED}/nowhere")
    assert_one_line(done, 3, f"PostgreSQL is unreachable (DATABASE_URL → {CLOSED}/nowhere)")


@pytest.mark.parametrize(
    "args",
    [
        ("ping", "--timeout", "1"), ("notifications", "send", "42", "hi"),
        ("notifications", "broadcast", "1", "2", "-m", "hi"), ("dlq", "replay", "--all", "--yes"),
        ("schedules", "run", "process_notification_queue"), ("queues",),
    ],
)  # fmt: skip
def test_rabbitmq_unreachable_is_one_line_naming_it_and_exit_3(
    clean_tables: sa.Engine, args: tuple[str, ...]
) -> None:
    with clean_tables.begin() as conn:  # something to replay
        conn.execute(
            sa.text("""INSERT INTO dead_letters (message_id, queue_name, actor_name, args, kwargs, reason,
                       first_failed_at, last_failed_at) VALUES ('cli-err', 'notifications',
                       'send_notification', '[1, "x", "t"]', '{}', 'retries_exhausted', now(), now())""")
        )
    done = run(
        *args, RABBITMQ_URL=f"amqp://guest:guest@{CLOSED}/%2F", RABBITMQ_MANAGEMENT_URL=f"http://{CLOSED}"
    )
    assert_one_line(
        done,
        3,
        f"RabbitMQ is unreachable (RABBITMQ_URL → {CLOSED} vhost /): cannot connect: Connection refused",
    )
    if args[0] == "dlq":
        with clean_tables.connect() as conn:
            assert conn.execute(sa.text("SELECT status FROM dead_letters")).scalar_one() == "dead"


def test_a_send_whose_result_redis_cannot_give_says_it_was_enqueued(
    no_leftover_messages: None, clean_tables: sa.Engine
) -> None:
    done = run("notifications", "send", "42", "hi", REDIS_URL=f"redis://{CLOSED}/0")
    assert_one_line(done, 3, "was enqueued, but its result cannot be read: Redis is unreachable (REDIS_URL")
    assert "enqueued send_notification (job " in done.stdout


def test_bad_input_is_refused_before_anything_is_enqueued(
    no_leftover_messages: None, clean_tables: sa.Engine
) -> None:
    empty = run("notifications", "send", "42", "")
    assert_one_line(empty, 2, "send_notification: message = '': String should have at least 1 character")
    mode = run("notifications", "send", "42", "hi", "--parse-mode", "XML")
    assert_one_line(mode, 2, "parse_mode = 'XML': Input should be 'HTML', 'MarkdownV2' or 'Markdown'")
    huge = run("notifications", "send", str(2**64), "hi")
    assert_one_line(huge, 2, "telegram_id = 18446744073709551616: Input should be less than or equal to")
    with clean_tables.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM jobs")).scalar_one() == 0


def test_a_result_not_there_in_time_says_the_job_goes_on(
    no_leftover_messages: None, clean_tables: sa.Engine
) -> None:
    done = run("notifications", "send", "42", "hi", "--wait", "1")  # no worker runs
    assert_one_line(done, 1, "no result within 1 s; the job goes on: worker-app jobs show ")


def test_debug_shows_the_traceback() -> None:
    done = run("--debug", "jobs", "list", DATABASE_URL=f"postgresql+psycopg://postgres@{CLOSED}/nowhere")
    assert done.returncode == 1 and "Traceback" in done.stderr and "OperationalError" in done.stderr
