"""Signal dispatch to the middleware hooks that do something, in Dramatiq's order and with its
error handling (worker_app/dispatch.py)."""

from __future__ import annotations

import logging
from typing import Any

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import SkipMessage

from worker_app.dispatch import HookDispatch


class DispatchingStub(HookDispatch, StubBroker):
    pass


class Recorder(dramatiq.Middleware):
    def __init__(self, name: str, calls: list[str]) -> None:
        self.name, self.calls = name, calls

    def before_process_message(self, broker: Any, message: Any) -> None:
        self.calls.append(f"before {self.name}")

    def after_process_message(
        self, broker: Any, message: Any, *, result: Any = None, exception: Any = None
    ) -> None:
        self.calls.append(f"after {self.name} {result}")


class BeforeOnly(dramatiq.Middleware):
    def __init__(self, calls: list[str], error: BaseException | None = None) -> None:
        self.calls, self.error = calls, error

    def before_process_message(self, broker: Any, message: Any) -> None:
        self.calls.append("before-only")
        if self.error is not None:
            raise self.error


def _brokers(make: Any) -> tuple[list[str], list[str]]:
    """The calls made by Dramatiq's own dispatch and by ours for the same middleware and signals."""
    recorded = []
    for broker_class in (StubBroker, DispatchingStub):
        calls: list[str] = []
        broker = broker_class(middleware=make(calls))
        broker.emit_before("process_message", object())
        broker.emit_after("process_message", object(), result=7)
        broker.emit_before("ack", object())
        recorded.append(calls)
    return recorded[0], recorded[1]


def test_hooks_run_in_dramatiqs_order_and_no_op_hooks_are_skipped() -> None:
    # Given a stack where one middleware implements only a before-hook
    def make(calls: list[str]) -> list[dramatiq.Middleware]:
        return [Recorder("a", calls), BeforeOnly(calls), Recorder("b", calls)]

    # When both dispatchers emit the same signals
    dramatiqs, ours = _brokers(make)

    # Then the calls are the same, before-hooks in list order and after-hooks reversed
    assert ours == dramatiqs == ["before a", "before-only", "before b", "after b 7", "after a 7"]
    broker = DispatchingStub(middleware=make([]))
    assert [h.__self__ for h in broker.hooks("before_ack")] == []
    assert len(broker.hooks("after_process_message")) == 2


def test_a_failing_hook_is_logged_and_the_next_still_runs(caplog: pytest.LogCaptureFixture) -> None:
    # Given a middleware whose hook raises an ordinary exception
    calls: list[str] = []
    broker = DispatchingStub(middleware=[BeforeOnly(calls, RuntimeError("boom")), Recorder("b", calls)])

    # When a signal is emitted
    with caplog.at_level(logging.CRITICAL):
        broker.emit_before("process_message", object())

    # Then it is logged as Dramatiq does and the next middleware still runs
    assert calls == ["before-only", "before b"]
    assert "Unexpected failure in before_process_message of" in caplog.text
    assert "RuntimeError: boom" in caplog.text


def test_skip_message_from_a_before_hook_propagates() -> None:
    # Given a middleware that skips the message
    calls: list[str] = []
    broker = DispatchingStub(middleware=[BeforeOnly(calls, SkipMessage("no")), Recorder("b", calls)])

    # When the before-hooks run, the skip stops them as it does in Dramatiq
    with pytest.raises(SkipMessage):
        broker.emit_before("process_message", object())
    assert calls == ["before-only"]


def test_a_middleware_list_changed_in_place_is_seen_at_once() -> None:
    # Given a broker that has already dispatched once
    calls: list[str] = []
    broker = DispatchingStub(middleware=[Recorder("a", calls)])
    broker.emit_before("process_message", object())

    # When the list is changed in place, keeping its length, and a middleware is added
    broker.middleware[:] = [Recorder("c", calls)]
    broker.emit_before("process_message", object())
    broker.add_middleware(Recorder("d", calls))
    broker.emit_before("process_message", object())

    # Then each emit calls the middleware the list holds at that moment
    assert calls == ["before a", "before c", "before c", "before d"]
