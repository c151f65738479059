"""Tier 2: the monitoring jobs on the real middleware (StubBroker) when the panel times out: two
retries 15 s apart (each released at once by the capturing broker), then the run is skipped with one
warning and no alert; the next run, with the panel back, records the nodes."""

from __future__ import annotations

import logging
import os
from typing import Any

import pytest
import sqlalchemy as sa

from actors.monitoring import check_server_health
from actors.monitoring.health import current_key
from sandbox.server import RunningSandbox
from tests.fixtures.notifications import MakeRuntime, admin_messages
from tests.fixtures.remnawave import Panel
from tests.fixtures.stub import DelayCapturingStubBroker, run_until_idle
from tests.monitoring.test_health import add_nodes
from worker_app.policies import POLICIES
from worker_app.runtime import Runtime


@pytest.fixture
def impatient_runtime(make_runtime: MakeRuntime, panel: Panel) -> Runtime:
    """The sandbox-backed runtime, giving the panel 0.3 s to answer."""
    panel.admin("POST", "tokens", {"token": os.environ["REMNAWAVE_API_TOKEN"], "scopes": None})
    return make_runtime(REMNAWAVE_URL=panel.url, REMNAWAVE_TIMEOUT_S="0.3")


def test_a_panel_timing_out_is_retried_twice_15_s_apart_then_skipped_with_one_warning(
    panel: Panel,
    impatient_runtime: Runtime,
    capturing_broker: DelayCapturingStubBroker,
    clean_tables: sa.Engine,
    sandbox: RunningSandbox,
    redis_client: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given a node, and a panel answering nothing within the worker's timeout
    [uuid] = add_nodes(panel, 1)
    panel.faults(latency_ms=2000)
    # When the health run fails every time (each delayed retry released at once)
    caplog.set_level(logging.INFO)
    check_server_health.send()
    delays = []
    for _ in range(POLICIES["monitoring"].max_retries + 1):
        run_until_idle(capturing_broker, "monitoring")
        if not capturing_broker.held:
            break
        retry, delay = capturing_broker.held.pop()
        delays.append(delay)
        capturing_broker.enqueue(retry)
    # Then it was retried twice, 15 s apart, then recorded dead with one warning and no alert
    assert delays == [15_000, 15_000]
    with clean_tables.connect() as conn:
        [row] = conn.execute(
            sa.text("SELECT reason, attempts, exception_type, exception_message FROM dead_letters")
        )
    assert (row.reason, row.attempts) == ("retries_exhausted", 3)
    assert row.exception_type.endswith("RemnawaveUnavailable")
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.name == "worker_app.exhaustion" and r.levelno == logging.WARNING
    ]
    assert len(warnings) == 1 and warnings[0].startswith(
        "monitoring: check_server_health skipped after 3 attempt(s) (retries_exhausted)"
    )
    assert admin_messages(impatient_runtime, sandbox) == []
    assert redis_client.get(current_key(uuid)) is None

    # And the next scheduled run, with the panel answering again, records the node
    panel.faults(latency_ms=None)
    check_server_health.send()
    run_until_idle(capturing_broker, "monitoring")
    assert capturing_broker.held == []
    assert '"status": "online"' in str(redis_client.get(current_key(uuid)))
