"""WORKER_QUEUES / ENABLE_<DOMAIN>: which queues a worker started without -Q consumes."""

from __future__ import annotations

import types

import pytest

from worker_app import ordered
from worker_app.bootstrap import _restricted
from worker_app.config import load_settings
from worker_app.errors import ConfigurationError
from worker_app.middleware.queue_control import QueueControl
from worker_app.policies import DOMAINS


def test_by_default_every_domain_and_no_restriction() -> None:
    settings = load_settings({})
    assert settings.enabled_queues() == list(DOMAINS)
    assert _restricted(settings) is None  # the tests' own queues, tools' queues: everything declared


def test_worker_queues_less_the_disabled_domains() -> None:
    settings = load_settings({"WORKER_QUEUES": "notifications, payments,reports", "ENABLE_REPORTS": "false",
                              "ENABLE_SOMETHING_ELSE": "false"})  # fmt: skip
    assert settings.enabled_queues() == ["notifications", "payments"]
    assert _restricted(settings) == ["notifications", "payments"]
    everything_but = load_settings({"ENABLE_BULK": "0"})
    assert _restricted(everything_but) == [d for d in DOMAINS if d != "bulk"]


@pytest.mark.parametrize(
    ("env", "error"),
    [
        (
            {"WORKER_QUEUES": "payments,paymnets"},
            "WORKER_QUEUES: unknown queue(s) paymnets (domains: notifications",
        ),
        ({"ENABLE_PAYMENTS": "maybe"}, "ENABLE_PAYMENTS: expected true or false, not 'maybe'"),
    ],
)
def test_a_wrong_name_or_value_stops_start_up_naming_it(env: dict[str, str], error: str) -> None:
    with pytest.raises(ConfigurationError, match=error.replace("(", r"\(").replace(")", r"\)")):
        load_settings(env)


def test_the_worker_gets_the_enabled_queues_and_an_ordered_domains_shards() -> None:
    control = QueueControl(database=None, poll_s=60, enabled=["payments", "bot_updates"])  # type: ignore[arg-type]
    worker = types.SimpleNamespace(consumer_whitelist=None)
    control.widen(worker)
    assert worker.consumer_whitelist == {"payments", "bot_updates", *ordered.with_shards(["bot_updates"])}
    told = types.SimpleNamespace(consumer_whitelist={"bot_updates"})  # -Q wins over WORKER_QUEUES
    control.widen(told)
    assert told.consumer_whitelist == set(ordered.with_shards(["bot_updates"]))
