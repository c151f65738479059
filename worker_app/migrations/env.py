"""Alembic environment: runs migrations on the connection or URL handed over by worker_app.migrate."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

import models

target_metadata = models.Base.metadata


def run_migrations_online() -> None:
    """Run migrations on the given connection, or on a fresh one to ``sqlalchemy.url``."""
    connection = context.config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(context.config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations_online()
