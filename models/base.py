"""Declarative base with a naming convention, so migrations and drift checks name constraints alike."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, MetaData, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Base of every model; all timestamps are ``timestamptz`` in UTC."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: DateTime(timezone=True)}


class CreatedAt:
    """``created_at`` set by the database."""

    created_at: Mapped[datetime] = mapped_column(server_default=func.now(), index=True)


class Timestamps(CreatedAt):
    """``created_at`` and ``updated_at``, both set by the database."""

    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())
