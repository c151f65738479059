"""Node health over a report's period, read from what ``check_server_health`` stores in Redis."""

from __future__ import annotations

from datetime import timedelta

import pytest
import redis

from actors.monitoring.health import history_key
from actors.reports.nodes import node_health
from actors.reports.sections import Options, health_lines
from tests.reports.data import SUNDAY, at, node
from tests.reports.telegram_html import check

DAY_START, DAY_END = at(SUNDAY), at(SUNDAY + timedelta(days=1))
SATURDAY = SUNDAY - timedelta(days=1)
NEXT_MORNING = at(SUNDAY + timedelta(days=1), 6)


def health(client: redis.Redis, history_days: int = 14) -> dict[str, tuple[float, float, int, int]]:
    """Per node name: hours offline, hours known, downs and changes on SUNDAY."""
    period = node_health(client, DAY_START, DAY_END, now=NEXT_MORNING, history_days=history_days)
    return {n.name: (n.offline_s / 3600, n.known_s / 3600, n.downs, n.changes) for n in period.nodes}


def test_offline_time_is_measured_from_the_changes_across_the_period_bounds(
    redis_client: redis.Redis,
) -> None:
    # Given a node down since Saturday night, back at 02:00; one down at 20:00 and still down;
    # one steady since long ago; one first seen at noon; one removed from the panel at 06:00
    node(redis_client, "a", "overnight", status="online", since=at(SUNDAY, 2),
         changes=((at(SATURDAY, 22), "online", "offline"), (at(SUNDAY, 2), "offline", "online")))  # fmt: skip
    node(redis_client, "b", "evening", status="offline", since=at(SUNDAY, 20),
         changes=((at(SUNDAY, 20), "online", "offline"),))  # fmt: skip
    node(redis_client, "c", "steady", status="online", since=at(SUNDAY - timedelta(days=40)))
    node(redis_client, "d", "newcomer", status="online", since=at(SUNDAY, 12))
    node(redis_client, "e", "removed", status="gone", since=at(SUNDAY, 6),
         changes=((at(SUNDAY, 6), "online", "gone"),))  # fmt: skip

    # When Sunday's health is read
    found = health(redis_client)

    # Then each node's offline and known hours follow its changes
    assert found == {
        "overnight": (2.0, 24.0, 0, 1),
        "evening": (4.0, 24.0, 1, 1),
        "steady": (0.0, 24.0, 0, 0),
        "newcomer": (0.0, 12.0, 0, 0),
        "removed": (0.0, 6.0, 0, 1),
    }


def test_a_node_removed_from_the_health_set_is_still_found_by_its_history(redis_client: redis.Redis) -> None:
    # Given a node gone from the panel: no longer in the health set, its state expired, its history left
    redis_client.zadd(
        history_key("f"), {'{"status": "offline", "from": "online", "at": 1}': DAY_START + 3600}
    )

    # When Sunday's health is read
    found = health(redis_client)

    # Then it is there by the start of its uuid, offline from 01:00
    assert found == {"f": (23.0, 24.0, 1, 1)}


def test_time_before_the_kept_history_is_unknown_and_said_so(redis_client: redis.Redis) -> None:
    # Given HEALTH_HISTORY_DAYS = 1: at 06:00 Monday, history reaches back to 06:00 Sunday only
    node(redis_client, "c", "steady", status="online", since=at(SUNDAY - timedelta(days=40)))

    # When Sunday's health is read
    period = node_health(redis_client, DAY_START, DAY_END, now=NEXT_MORNING, history_days=1)

    # Then only 18 h are known, and the report says from when
    assert [(n.known_s / 3600) for n in period.nodes] == [18.0]
    lines = health_lines(period, Options(history_days=1), limit=5, times=True)
    text = check("\n".join(lines)).text
    assert (
        "health history is kept 1 days (HEALTH_HISTORY_DAYS): known from 2026-12-06 06:00:00 UTC only" in text
    )


def test_a_malformed_history_entry_is_skipped_with_a_warning(
    redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    node(redis_client, "a", "flaky", status="online", since=at(SUNDAY, 2),
         changes=((at(SUNDAY, 1), "online", "offline"), (at(SUNDAY, 2), "offline", "online")))  # fmt: skip
    redis_client.zadd(history_key("a"), {"not json": DAY_START + 60})

    assert health(redis_client) == {"flaky": (1.0, 24.0, 1, 2)}
    assert "node a has a malformed health history entry 'not json', skipped" in caplog.text
