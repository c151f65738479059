"""The Remnawave client over HTTP against the sandbox panel (CONTRACTS.md, Remnawave)."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest

from tests.fixtures.remnawave import TOKEN, Panel, user_spec
from worker_app import context
from worker_app.clients.remnawave import (
    RemnawaveAuthError,
    RemnawaveClient,
    RemnawaveNotFound,
    RemnawaveRejected,
    RemnawaveUnavailable,
    User,
    _next_cursor,
)


def test_a_full_scan_streams_pages_of_a_thousand_in_id_order(
    panel: Panel, remnawave: RemnawaveClient
) -> None:
    # Given 2,500 users
    panel.seed(count=2500, seed=1)
    # When every user is streamed
    pages = remnawave.user_pages()
    users = [u for page in pages for u in page]
    # Then all arrive once, in id order, in three calls of up to 1,000
    assert [u.id for u in users] == sorted({u.id for u in users}) and len(users) == 2500
    assert len(panel.calls("/api/users/stream")) == 3
    assert all(u.expire_at.tzinfo is not None for u in users)


def test_the_stream_is_a_generator_that_fetches_a_page_only_when_needed(
    panel: Panel, remnawave: RemnawaveClient
) -> None:
    panel.seed(count=2500, seed=1)
    stream = remnawave.stream_users()
    first = next(stream)
    assert first.id >= 1
    assert len(panel.calls("/api/users/stream")) == 1


def test_stream_filters_reach_the_panel(panel: Panel, remnawave: RemnawaveClient) -> None:
    panel.add_users(user_spec(status="DISABLED"), user_spec(status="ACTIVE"), user_spec(status="DISABLED"))
    assert {u.status for u in remnawave.stream_users(status="DISABLED")} == {"DISABLED"}
    assert "status=DISABLED" in panel.calls("/api/users/stream")[-1]["query"]


def test_proxy_headers_are_sent_once_for_an_http_base_and_the_trace_id_rides_along(
    panel: Panel, remnawave: RemnawaveClient
) -> None:
    panel.add_users(user_spec())
    context.bind(context.MessageContext("a" * 32))
    try:
        remnawave.get_user(1)
    finally:
        context.bind(None)
    call = panel.calls("/api/users/1")[-1]
    assert (call["forwarded_for"], call["forwarded_proto"], call["request_id"]) == (
        "127.0.0.1",
        "https",
        "a" * 32,
    )


def test_without_proxy_headers_the_panel_drops_the_socket_and_the_error_says_why(panel: Panel) -> None:
    client = RemnawaveClient(panel.url, TOKEN, timeout_s=5, proxy_headers=False)
    with pytest.raises(RemnawaveUnavailable, match="X-Forwarded-For and X-Forwarded-Proto: https"):
        client.system_stats()
    client.close()


def test_a_rejected_token_is_a_configuration_error_that_never_shows_the_token(panel: Panel) -> None:
    client = RemnawaveClient(panel.url, "wrong-token-0123456789", timeout_s=5)
    with pytest.raises(RemnawaveAuthError, match="REMNAWAVE_API_TOKEN is not accepted") as raised:
        client.get_user(1)
    assert "wrong-token-0123456789" not in str(raised.value) and raised.value.status == 401
    client.close()


def test_a_token_missing_a_scope_names_the_scope(panel: Panel) -> None:
    panel.admin("POST", "tokens", {"token": "nodes-only-token", "scopes": ["nodes"]})
    client = RemnawaveClient(panel.url, "nodes-only-token", timeout_s=5)
    assert client.nodes() == []
    with pytest.raises(RemnawaveAuthError, match="lacks the scope users:read"):
        next(client.stream_users())
    client.close()


def test_unknown_users_are_not_found_on_lookups_and_on_actions(remnawave: RemnawaveClient) -> None:
    with pytest.raises(RemnawaveNotFound) as lookup:
        remnawave.get_user(424242)
    with pytest.raises(RemnawaveNotFound) as action:
        remnawave.user_action(424242, "disable")
    assert (lookup.value.error_code, action.value.error_code) == ("A063", "A025")


def test_disabling_a_disabled_user_is_already_done_not_an_error(
    panel: Panel, remnawave: RemnawaveClient
) -> None:
    (user_id,) = panel.add_users(user_spec())
    disabled = remnawave.user_action(user_id, "disable")
    assert disabled is not None and disabled.status == "DISABLED"
    assert remnawave.user_action(user_id, "disable") is None  # A029
    assert remnawave.user_action(user_id, "enable") is not None
    assert remnawave.user_action(user_id, "enable") is None  # A030


def test_bulk_writes_go_in_calls_of_at_most_500_ids_and_an_empty_answer_is_success(
    panel: Panel, remnawave: RemnawaveClient
) -> None:
    panel.seed(count=1200, seed=2, statuses={"ACTIVE": 1.0}, expire_within_days=[5, 9])
    calls = remnawave.bulk_disable(range(1, 1201))
    bulk = panel.calls("/api/users/bulk/update")
    assert calls == len(bulk) == math.ceil(1200 / 500)
    assert [c["user_ids"] for c in bulk] == [500, 500, 200]
    assert {u.status for u in remnawave.stream_users()} == {"DISABLED"}


def test_server_errors_are_transient_and_open_the_breaker_so_a_dead_panel_is_not_hammered(
    panel: Panel, remnawave: RemnawaveClient
) -> None:
    panel.faults(server_error={"count": 100, "status": 502})
    for _ in range(3):
        with pytest.raises(RemnawaveUnavailable) as raised:
            remnawave.system_stats()
        assert raised.value.status == 502
    with pytest.raises(RemnawaveUnavailable, match="circuit breaker open"):
        remnawave.system_stats()
    assert len(panel.calls("/api/system/stats")) == 3


def test_a_panel_that_closes_every_connection_is_unavailable(
    panel: Panel, remnawave: RemnawaveClient
) -> None:
    panel.faults(down=True)
    with pytest.raises(RemnawaveUnavailable, match="closed without an answer"):
        remnawave.nodes()


def test_extend_is_relative_and_revives_an_expired_user(panel: Panel, remnawave: RemnawaveClient) -> None:
    (user_id,) = panel.add_users(user_spec(status="EXPIRED", expire_in=-timedelta(days=2)))
    before = remnawave.get_user(user_id)
    extended = remnawave.extend_user(user_id, 30)
    assert extended.status == "ACTIVE" and extended.expire_at > before.expire_at + timedelta(days=30)


def test_a_2x_panel_is_refused_with_a_clear_error(panel: Panel, remnawave: RemnawaveClient) -> None:
    panel.faults(version="2.8.1")
    with pytest.raises(RemnawaveRejected, match=r"panel 2\.8\.1 is not supported"):
        remnawave.require_3x()


def test_nodes_and_system_stats_parse(panel: Panel, remnawave: RemnawaveClient) -> None:
    panel.admin("POST", "nodes", {"nodes": [{"name": "de-1", "countryCode": "DE", "state": "offline"}]})
    (node,) = remnawave.nodes()
    assert (node.name, node.is_connected, node.country_code) == ("de-1", False, "DE")
    stats = remnawave.system_stats()
    assert set(stats["users"]["statusCounts"]) == {"ACTIVE", "DISABLED", "LIMITED", "EXPIRED"}


def test_a_stream_cursor_that_does_not_move_forward_is_an_error_not_a_loop() -> None:
    assert _next_cursor("1000", None) == 1000 and _next_cursor("2000", 1000) == 2000
    with pytest.raises(RemnawaveUnavailable, match="did not advance"):
        _next_cursor("1000", 1000)
    with pytest.raises(RemnawaveUnavailable, match="is not a number"):
        _next_cursor("abc", 1000)


def test_a_malformed_user_names_its_id_and_fields_never_their_values() -> None:
    with pytest.raises(RemnawaveUnavailable) as raised:
        User.from_json({"id": 7, "trojanPassword": "s3cret-pass", "subscriptionUrl": "https://x/sub/abc"})
    text = str(raised.value)
    assert "id 7" in text and "trojanPassword" in text
    assert "s3cret-pass" not in text and "https://x/sub/abc" not in text
