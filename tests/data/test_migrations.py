"""``worker-app db upgrade`` creates every table; ``worker-app db check`` reports drift (exit 1)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

import models
from tests.fixtures.services import recreate_database, require

WORKER_APP = str(Path(sys.executable).parent / "worker-app")


@pytest.fixture
def scratch_db() -> Iterator[str]:
    require("PostgreSQL", "127.0.0.1", 5432)
    main = make_url(os.environ["DATABASE_URL"])
    url = main.set(database=f"{main.database}_migrations").render_as_string(hide_password=False)
    recreate_database(url)
    yield url


def cli(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [WORKER_APP, *args],
        env={**os.environ, "DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def alter_by_hand(url: str, *statements: str) -> None:
    """Change the schema behind the migrations' back, as an operator or the backend might."""
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(sa.text(statement))
    engine.dispose()


def test_upgrade_then_check_is_clean_and_a_dropped_column_is_drift(scratch_db: str) -> None:
    # Given an empty database, When migrations are applied
    upgraded = cli("db", "upgrade", url=scratch_db)
    assert upgraded.returncode == 0, upgraded.stderr

    # Then every model table exists and the check passes
    engine = sa.create_engine(scratch_db)
    assert set(models.Base.metadata.tables) <= set(sa.inspect(engine).get_table_names())
    engine.dispose()
    clean = cli("db", "check", url=scratch_db)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "database matches the models" in clean.stdout

    # When a column is dropped and another loses its NOT NULL by hand
    alter_by_hand(
        scratch_db,
        "ALTER TABLE payments DROP COLUMN paid_at",
        "ALTER TABLE notification_queue ALTER COLUMN message DROP NOT NULL",
        "ALTER TABLE audit_logs ADD COLUMN backend_only text",
    )

    # Then the check names each drift and exits 1, noting (not failing on) the backend's extra column
    drifted = cli("db", "check", url=scratch_db)
    assert drifted.returncode == 1
    assert "DRIFT  missing column: payments.paid_at" in drifted.stdout
    assert (
        "DRIFT  nullability mismatch: notification_queue.message is nullable in the database"
        in drifted.stdout
    )
    assert "note   extra column (not in models, ignored): audit_logs.backend_only" in drifted.stdout


def test_check_reports_missing_tables_and_type_mismatches(scratch_db: str) -> None:
    # Given a migrated database where one table is gone and a column changed type
    assert cli("db", "upgrade", url=scratch_db).returncode == 0
    alter_by_hand(
        scratch_db,
        "DROP TABLE server_geolocations",
        "ALTER TABLE webhook_logs ALTER COLUMN event_type TYPE integer USING 0",
    )

    # When checked, Then both are reported
    drifted = cli("db", "check", url=scratch_db)
    assert drifted.returncode == 1
    assert "DRIFT  missing table: server_geolocations" in drifted.stdout
    assert (
        "DRIFT  type mismatch: webhook_logs.event_type is INTEGER in the database, VARCHAR(64)"
        in drifted.stdout
    )


def test_an_unreachable_database_is_one_clear_error() -> None:
    result = cli("db", "check", url="postgresql+psycopg://postgres@127.0.0.1:1/nowhere")
    assert result.returncode == 3
    assert "PostgreSQL is unreachable (DATABASE_URL → 127.0.0.1:1/nowhere)" in result.stderr
    assert "Traceback" not in result.stderr
