"""RunOnce: a claim PostgreSQL could not take while the message ran is recorded once it is back."""

from __future__ import annotations

from typing import Any

import dramatiq
import pytest
from sqlalchemy.exc import OperationalError

from tests.fixtures.worker import wait_for
from worker_app.middleware import once


class FlakyClaims(once.RunOnce):
    """Claims that fail while ``down`` is set, and remember who claimed."""

    def __init__(self) -> None:
        super().__init__(database=None)  # type: ignore[arg-type]
        self.down = True
        self.claimed: list[str] = []

    def claim(self, message: Any) -> bool | None:
        if self.down:
            raise OperationalError("INSERT ...", {}, Exception("the database system is shutting down"))
        self.claimed.append(message.message_id)
        return True

    def on_duplicate(self, message: Any) -> str:
        return "duplicate"


def test_a_claim_missed_during_an_outage_is_recorded_when_the_database_is_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(once, "RETRY_CLAIM_S", 0.05)
    claims = FlakyClaims()
    message = dramatiq.Message(queue_name="q", actor_name="a", args=(), kwargs={}, options={})
    # Given a message that ran while PostgreSQL was down, before and after it ran
    claims.before_process_message(None, message)  # type: ignore[arg-type]
    claims.after_process_message(None, message)  # type: ignore[arg-type]
    assert claims.claimed == []
    # When PostgreSQL answers again
    claims.down = False
    # Then its claim is recorded, once, and the retry thread ends
    wait_for(lambda: claims.claimed, 5, "the late claim")
    wait_for(lambda: claims._retrier is None, 5, "the retry thread to end")
    assert claims.claimed == [message.message_id]
