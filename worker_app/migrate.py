"""Schema management behind ``worker-app db``: apply migrations, and report drift between the
models and a live database."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import Connection

import models

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    """An Alembic config for our migrations, targeting ``url``."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Apply every migration up to ``revision``."""
    command.upgrade(alembic_config(url), revision)


@dataclass(frozen=True)
class Drift:
    """One difference between the models and the database; ``fatal`` ones fail ``db check``."""

    fatal: bool
    text: str


def check(url: str) -> list[Drift]:
    """Compare the models with the live database at ``url``; every difference, fatal first."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            drifts = _compare(conn)
    finally:
        engine.dispose()
    return sorted(drifts, key=lambda d: (not d.fatal, d.text))


def _compare(conn: Connection) -> list[Drift]:
    ours = set(models.Base.metadata.tables)

    def include(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        # Backend-owned databases hold many tables we do not model; only ours are compared.
        return not (type_ == "table" and reflected and name not in ours)

    ctx = MigrationContext.configure(
        conn, opts={"compare_type": True, "include_object": include, "compare_server_default": False}
    )
    existing = set(inspect(conn).get_table_names())
    drifts = [Drift(True, f"missing table: {name}") for name in sorted(ours - existing)]
    for diff in compare_metadata(ctx, models.Base.metadata):
        drift = _describe(diff)
        if drift is not None:
            drifts.append(drift)
    return drifts


def _name(obj: Any) -> str:
    return str(getattr(obj, "name", obj))


#: How each kind of Alembic difference reads, and whether it fails the check. Extra objects in
#: the database (the backend's own columns and indexes) are noted but are not drift.
_KINDS: dict[str, tuple[bool, Any]] = {
    "add_column": (True, lambda d: f"missing column: {d[2]}.{d[3].name} ({d[3].type})"),
    "remove_column": (False, lambda d: f"extra column (not in models, ignored): {d[2]}.{d[3].name}"),
    "add_index": (True, lambda d: f"missing index: {d[1].name} on {d[1].table.name}"),
    "remove_index": (False, lambda d: f"extra index (not in models): {d[1].name}"),
    "add_constraint": (True, lambda d: f"missing constraint: {_name(d[1])}"),
    "add_fk": (True, lambda d: f"missing constraint: {_name(d[1])}"),
    "remove_constraint": (False, lambda d: f"extra constraint (not in models): {_name(d[1])}"),
    "remove_fk": (False, lambda d: f"extra constraint (not in models): {_name(d[1])}"),
}


def _describe(diff: Any) -> Drift | None:
    if isinstance(diff, list):  # column modifications come grouped
        return _describe_modification(diff[0])
    if diff[0] == "add_table":
        return None  # reported as "missing table" above
    if diff[0] in _KINDS:
        fatal, text = _KINDS[diff[0]]
        return Drift(fatal, text(diff))
    return Drift(True, f"difference: {diff!r}")


def _describe_modification(mod: Any) -> Drift:
    kind, _schema, table, column, _info, db_value, model_value = mod
    if kind == "modify_type":
        return Drift(
            True,
            f"type mismatch: {table}.{column} is {db_value} in the database, {model_value} in the models",
        )
    if kind == "modify_nullable":

        def word(nullable: bool) -> str:
            return "nullable" if nullable else "NOT NULL"

        return Drift(
            True,
            f"nullability mismatch: {table}.{column} is {word(db_value)} in the database, "
            f"{word(model_value)} in the models",
        )
    return Drift(True, f"difference: {kind} on {table}.{column}: {db_value!r} vs {model_value!r}")
