"""One report line per reliability scenario: messages, processed, lost, duplicated, recovery time.

Printed (run pytest with ``-s`` to see them) and appended as JSON lines to ``RELIABILITY_REPORT``
when that variable names a file, so a full run yields the table of figures.

``RELIABILITY_SCALE`` (default 1) multiplies the message counts (and their waits) of the load
scenarios — the heavier variants, e.g. ``RELIABILITY_SCALE=10 bin/test tests/reliability -s
--timeout 1800`` for 50,000 sends with a worker killed mid-way (pytest's per-test timeout is 120 s).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

SCALE = max(1, int(os.environ.get("RELIABILITY_SCALE", "1")))


def scaled(count: int) -> int:
    """``count`` (messages, or seconds to wait for them) times RELIABILITY_SCALE."""
    return count * SCALE


@dataclass(frozen=True)
class ScenarioReport:
    scenario: str
    messages: int
    processed: int
    lost: int
    duplicated: int
    recovery_s: float | None
    note: str = ""

    def line(self) -> str:
        recovery = "-" if self.recovery_s is None else f"{self.recovery_s:.2f} s"
        return (
            f"[reliability] {self.scenario}: messages {self.messages}, processed {self.processed}, "
            f"lost {self.lost}, duplicated {self.duplicated}, recovery {recovery}"
            + (f" ({self.note})" if self.note else "")
        )


def report(result: ScenarioReport) -> ScenarioReport:
    print("\n" + result.line())
    target = os.environ.get("RELIABILITY_REPORT")
    if target:
        with open(target, "a", encoding="utf-8") as f:
            f.write(json.dumps(asdict(result)) + "\n")
    return result
