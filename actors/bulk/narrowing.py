"""Which users of a failed bulk call failed? Group testing over the panel's bulk endpoints.

Remnawave's bulk writes answer 202/204 without a body: a call either changes every user it names
or fails whole, saying nothing about which user made it fail. :func:`apply_batch` sends a batch in
one call and, only when that call is refused, narrows it down with calls that apply as they test:

1. split the failed group in halves and send the first half;
2. if it is applied, the failure is in the second half: split that (no call for it whole);
3. if it is refused too, go on into it, and keep the second half aside;
4. at a single user the failing one is found (a user only *inferred* to fail — never sent alone —
   is sent once alone to confirm: a flaky answer must not accuse the wrong user);
5. then everything kept aside goes out in one call, narrowed the same way if it is refused.

One failing user in a batch of 50 costs about 8 calls besides the batch's own, instead of 50: the
10,000-user job with 50 failing users makes about 550 calls. A batch in which many users fail
(the panel refuses the operation itself, not a user) stops narrowing after ``max_failed`` of them
and reports the rest with the same error, unsent: one refused request is not worth 100 calls.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

Send = Callable[[Sequence[int]], "str | None"]
"""Send one bulk call for these users: ``None`` when the panel applied it, else the panel's error
(one line). Raises for anything that is not an answer about these users (the panel unavailable)."""


@dataclass
class BatchOutcome:
    """What one batch came to: users applied, users failed with their error, calls made."""

    applied: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)
    calls: int = 0


def apply_batch(user_ids: Sequence[int], send: Send, *, max_failed: int) -> BatchOutcome:
    """Send ``user_ids`` in one call and, if it is refused, find the users that fail (see the module)."""
    outcome = BatchOutcome()
    if not user_ids:
        return outcome
    error = _send(user_ids, send, outcome)
    if error is not None:
        _narrow(list(user_ids), error, send, outcome, max(1, max_failed))
    return outcome


def _send(group: Sequence[int], send: Send, outcome: BatchOutcome) -> str | None:
    outcome.calls += 1
    error = send(group)
    if error is None:
        outcome.applied.extend(group)
    return error


def _narrow(group: list[int], error: str, send: Send, outcome: BatchOutcome, max_failed: int) -> None:
    """``group`` was refused with ``error`` (``observed``); find its failing users."""
    pending: list[list[int]] = [group]
    errors = [error]
    while pending:
        group, error = pending.pop(), errors.pop()
        aside: list[int] = []
        observed = True
        while len(group) > 1:
            if len(outcome.failed) >= max_failed:
                _give_up([group, aside, *pending], error, outcome)
                return
            first, second = group[: len(group) // 2], group[len(group) // 2 :]
            refused = _send(first, send, outcome)
            if refused is None:
                group, observed = second, False
            else:
                aside.extend(second)
                group, error, observed = first, refused, True
        if not observed:
            confirmed = _send(group, send, outcome)
            if confirmed is not None:
                error = confirmed
        if observed or confirmed is not None:
            outcome.failed[group[0]] = error
        if aside:
            refused = _send(aside, send, outcome)
            if refused is not None:
                pending.append(aside)
                errors.append(refused)


def _give_up(groups: list[list[int]], error: str, outcome: BatchOutcome) -> None:
    note = f"{error} (not narrowed further: {len(outcome.failed)} users of this batch failed already)"
    for group in groups:
        for user_id in group:
            outcome.failed.setdefault(user_id, note)
