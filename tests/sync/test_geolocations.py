"""sync_server_geolocations: the sandbox panel's nodes (200 in 50 countries) upserted into
server_geolocations in real PostgreSQL, from the static country table."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import sqlalchemy as sa

from actors.sync import sync_server_geolocations
from actors.sync.countries import COUNTRIES
from actors.sync.geolocations import JOB, sync_geolocations
from actors.sync.metrics import sync_total
from tests.fixtures.remnawave import Panel
from worker_app.runtime import Runtime

FIFTY_COUNTRIES = sorted(COUNTRIES)[::5][:50]
UNCHANGED = {"inserted": 0, "updated": 0, "removed": 0, "unknown_country": 0}


def add_nodes(panel: Panel, *codes: str) -> list[str]:
    """One online node per country code, named ``<code>-<position>``; their uuids in order."""
    specs = [{"name": f"{code or 'none'}-{i}", "countryCode": code} for i, code in enumerate(codes)]
    return panel.add_nodes(*specs)


def rows(engine: sa.Engine) -> dict[str, dict[str, Any]]:
    with engine.connect() as conn:
        found = conn.execute(sa.text("SELECT * FROM server_geolocations"))
        return {r.node_uuid: dict(r._mapping) for r in found}


def place(row: dict[str, Any]) -> tuple[Any, ...]:
    return row["country_code"], row["country"], row["latitude"], row["longitude"]


def counted(outcome: str) -> float:
    value: float = sync_total().labels(JOB, outcome)._value.get()
    return value


def test_two_hundred_nodes_in_fifty_countries_are_placed_and_a_second_run_changes_nothing(
    panel: Panel, panel_runtime: Runtime, clean_tables: sa.Engine, caplog: pytest.LogCaptureFixture
) -> None:
    # Given 200 nodes spread over 50 countries
    codes = [FIFTY_COUNTRIES[i % 50] for i in range(200)]
    uuids = add_nodes(panel, *codes)
    addresses = {n.uuid: n.raw["address"] for n in panel_runtime.remnawave.nodes()}
    inserted_before = counted("inserted")
    caplog.set_level(logging.INFO, logger="actors.sync")

    # When the sync runs
    first = sync_server_geolocations()

    # Then every node has its row at its country's point from the table
    assert first["counts"] == {**UNCHANGED, "inserted": 200, "unchanged": 0}
    stored = rows(clean_tables)
    assert len(stored) == 200 and {r["country_code"] for r in stored.values()} == set(FIFTY_COUNTRIES)
    for i, (uuid, code) in enumerate(zip(uuids, codes, strict=True)):
        row = stored[uuid]
        assert (row["name"], row["address"]) == (f"{code}-{i}", addresses[uuid])
        assert place(row) == (code, *COUNTRIES[code])
        assert (row["city"], row["region"]) == (None, None)
    assert counted("inserted") == inserted_before + 200
    [line] = [r for r in caplog.records if r.getMessage().startswith(f"sync job done: {JOB}")]
    assert line.__dict__["counts"]["inserted"] == 200

    # When it runs again with nothing changed
    second = sync_server_geolocations()

    # Then nothing was written: every row as it was, updated_at included
    assert second["counts"] == {**UNCHANGED, "unchanged": 200}
    assert rows(clean_tables) == stored


def test_a_node_that_moves_country_is_placed_again_and_other_places_are_kept(
    panel: Panel, panel_runtime: Runtime, clean_tables: sa.Engine
) -> None:
    # Given three German nodes synced, one placed in its city by an admin
    moving, pinned, still = add_nodes(panel, "DE", "DE", "DE")
    sync_server_geolocations()
    with clean_tables.begin() as conn:
        conn.execute(sa.text("UPDATE server_geolocations SET city = 'Berlin', region = 'Berlin' "
                             "WHERE node_uuid = :u"), {"u": moving})  # fmt: skip
        conn.execute(sa.text("UPDATE server_geolocations SET city = 'Frankfurt', latitude = 50.11, "
                             "longitude = 8.68 WHERE node_uuid = :u"), {"u": pinned})  # fmt: skip
    before = rows(clean_tables)

    # When one node moves to the Netherlands and the sync runs
    panel.admin("POST", f"nodes/{moving}/state", {"countryCode": "NL"})
    report = sync_server_geolocations()

    # Then that row follows it (its old city dropped), the admin's placement is kept, the rest untouched
    assert report["counts"] == {**UNCHANGED, "updated": 1, "unchanged": 2}
    after = rows(clean_tables)
    assert place(after[moving]) == ("NL", *COUNTRIES["NL"])
    assert (after[moving]["city"], after[moving]["region"]) == (None, None)
    assert after[moving]["updated_at"] > before[moving]["updated_at"]
    assert after[pinned] == before[pinned] and after[still] == before[still]
    assert (after[pinned]["city"], after[pinned]["latitude"], after[pinned]["longitude"]) == (
        "Frankfurt",
        50.11,
        8.68,
    )


def test_an_unknown_country_is_counted_logged_and_never_guessed(
    panel: Panel, panel_runtime: Runtime, clean_tables: sa.Engine, caplog: pytest.LogCaptureFixture
) -> None:
    # Given nodes with the panel's "no country" XX, an empty code and a lower-case known one
    nowhere, blank, lower = add_nodes(panel, "XX", "", "fi")

    # When the sync runs
    report = sync_server_geolocations()

    # Then the unknown two are stored without a place, counted and named in one warning
    assert report["counts"] == {**UNCHANGED, "inserted": 3, "unchanged": 0, "unknown_country": 2}
    stored = rows(clean_tables)
    assert place(stored[nowhere]) == place(stored[blank]) == (None, None, None, None)
    assert place(stored[lower]) == ("FI", *COUNTRIES["FI"])
    [warning] = [
        r for r in caplog.records if r.levelno == logging.WARNING and "unknown country" in r.getMessage()
    ]
    assert "XX-0" in warning.getMessage() and "none-1" in warning.getMessage()
    assert "fi-2" not in warning.getMessage()

    # When the XX node gets a real country, the next run places it
    panel.admin("POST", f"nodes/{nowhere}/state", {"countryCode": "FR"})
    again = sync_server_geolocations()
    assert again["counts"] == {**UNCHANGED, "updated": 1, "unchanged": 2, "unknown_country": 1}
    assert place(rows(clean_tables)[nowhere]) == ("FR", *COUNTRIES["FR"])


def test_rows_of_nodes_gone_from_the_panel_are_deleted_unless_the_panel_lists_none(
    panel: Panel, panel_runtime: Runtime, clean_tables: sa.Engine, caplog: pytest.LogCaptureFixture
) -> None:
    # Given three synced nodes
    gone, *kept = add_nodes(panel, "SE", "NO", "DK")
    sync_server_geolocations()
    nodes = panel_runtime.remnawave.nodes()

    # When the panel no longer lists one, its row goes
    report = sync_geolocations(panel_runtime.database, [n for n in nodes if n.uuid != gone])
    assert report == {**UNCHANGED, "removed": 1, "unchanged": 2}
    assert sorted(rows(clean_tables)) == sorted(kept)

    # But a panel listing no node at all deletes nothing, and says why
    assert sync_geolocations(panel_runtime.database, []) == {**UNCHANGED, "unchanged": 0}
    assert sorted(rows(clean_tables)) == sorted(kept)
    assert any("lists no node at all" in r.getMessage() for r in caplog.records)
