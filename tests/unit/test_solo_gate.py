"""RedeliveryLimit's solo gate: a suspect waits for the running messages and holds new ones back;
every waiter is woken when it may go on (the gate notifies only when someone waits)."""

from __future__ import annotations

import threading

from tests.fixtures.worker import wait_for
from worker_app.middleware.guards import _SoloGate


def test_a_suspect_waits_for_running_messages_and_holds_new_ones_back() -> None:
    gate = _SoloGate()
    log: list[str] = []
    running = threading.Event()
    release_running = threading.Event()

    def message(name: str, *, alone: bool = False, hold: threading.Event | None = None) -> None:
        gate.enter(alone=alone)
        log.append(f"{name} in")
        if hold is not None:
            running.set()
            hold.wait(5)
        log.append(f"{name} out")
        gate.leave()

    release_suspect = threading.Event()
    first = threading.Thread(target=message, args=("first",), kwargs={"hold": release_running})
    first.start()
    running.wait(5)
    suspect = threading.Thread(
        target=message, args=("suspect",), kwargs={"alone": True, "hold": release_suspect}
    )
    suspect.start()
    wait_for(lambda: gate._waiting == 1, 5, "the suspect to wait for the running message", poll_s=0.01)
    later = threading.Thread(target=message, args=("later",))
    later.start()
    wait_for(lambda: gate._waiting == 2, 5, "the later message to wait behind the suspect", poll_s=0.01)

    release_running.set()  # the running message ends: the suspect (only) may go in
    wait_for(lambda: "suspect in" in log, 5, "the suspect to be woken", poll_s=0.01)
    assert "later in" not in log
    release_suspect.set()  # the suspect ends: the later message is woken
    for thread in (first, suspect, later):
        thread.join(5)
    assert log == ["first in", "first out", "suspect in", "suspect out", "later in", "later out"]
    assert gate._running == 0 and gate._waiting == 0 and not gate._solo


def test_leave_without_enter_is_a_no_op() -> None:
    gate = _SoloGate()
    gate.leave()
    gate.enter()
    gate.leave()
    gate.leave()
    assert gate._running == 0
