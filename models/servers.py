"""``server_geolocations``: where each VPN node is, for the admin SPA's map (backend-owned)."""

from __future__ import annotations

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, Timestamps


class ServerGeolocation(Timestamps, Base):
    """One node's coordinates, upserted by ``sync_server_geolocations`` keyed on ``node_uuid``."""

    __tablename__ = "server_geolocations"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    node_uuid: Mapped[str] = mapped_column(String(36), unique=True)
    name: Mapped[str] = mapped_column(String(128))
    address: Mapped[str | None] = mapped_column(String(255))
    country_code: Mapped[str | None] = mapped_column(String(2))
    country: Mapped[str | None] = mapped_column(String(64))
    city: Mapped[str | None] = mapped_column(String(64))
    region: Mapped[str | None] = mapped_column(String(64))
    latitude: Mapped[float | None]
    longitude: Mapped[float | None]
