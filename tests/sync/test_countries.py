"""The static country table behind sync_server_geolocations: every ISO 3166-1 code, one plausible
point each, and a lookup that never guesses."""

from __future__ import annotations

import re

import pytest

from actors.sync.countries import COUNTRIES, Country, lookup


def test_the_table_has_every_iso_3166_1_code_once_with_a_point_on_the_globe() -> None:
    assert len(COUNTRIES) == 249  # ISO 3166-1 alpha-2 as of 2026 (iso-codes 4.15)
    for code, (name, latitude, longitude) in COUNTRIES.items():
        assert re.fullmatch(r"[A-Z]{2}", code), code
        assert 0 < len(name) <= 64, code  # server_geolocations.country is VARCHAR(64)
        assert -90 <= latitude <= 90 and -180 <= longitude <= 180, code


@pytest.mark.parametrize(
    ("code", "north", "east"),
    [("DE", True, True), ("US", True, False), ("BR", False, False), ("AU", False, True),
     ("JP", True, True), ("AR", False, False), ("ZA", False, True), ("CA", True, False),
     ("CW", True, False), ("BV", False, True)],
)  # fmt: skip
def test_points_lie_in_their_countrys_hemispheres(code: str, north: bool, east: bool) -> None:
    _, latitude, longitude = COUNTRIES[code]
    assert (latitude > 0, longitude > 0) == (north, east)


def test_lookup_ignores_case_and_spaces_and_never_guesses() -> None:
    assert lookup(" de ") == Country("Germany", *COUNTRIES["DE"][1:])
    assert lookup("gb") is not None and lookup("GB") == lookup("gb")
    for unknown in ("XX", "", None, "ZZ", "DEU", "U"):
        assert lookup(unknown) is None, unknown
