"""The sandbox's state across a reset: a test's late call does not show up in the next test."""

from __future__ import annotations

import threading

from sandbox.telegram import DEFAULT_TOKEN, TelegramState


def test_a_call_still_sleeping_on_latency_at_a_reset_is_not_logged_after_it() -> None:
    # Given a send sleeping on injected latency
    state = TelegramState()
    state.set_faults(latency_ms=60_000)
    late = threading.Thread(
        target=state.call, args=(DEFAULT_TOKEN, "sendMessage", {"chat_id": 1, "text": "old"})
    )
    late.start()
    # When the state is reset (the next test begins), which wakes it, and a new send arrives
    state.reset()
    late.join(timeout=10)
    state.call(DEFAULT_TOKEN, "sendMessage", {"chat_id": 2, "text": "new"})
    # Then only the new send is in the log
    assert not late.is_alive()
    assert [entry["text"] for entry in state.received()] == ["new"]
