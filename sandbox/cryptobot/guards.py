"""The fake Crypto Pay's injected faults: in front of the API (errors, latency, a dead service, a
rejected token) and on webhook delivery (duplicates, delay, loss, bad signatures, stale dates)."""

from __future__ import annotations

import http
from dataclasses import dataclass

from sandbox.cryptobot.format import ApiError, CpReply


@dataclass
class Faults:
    """Injected faults, all off by default; change them with ``CryptoBotState.set_faults``.

    API: the next ``server_error_count`` ``/api`` calls answer ``server_error_status`` (500: the API's
    own ``INTERNAL_SERVER_ERROR`` envelope; another 5xx: plain text, as a proxy in front answers); every
    answer waits ``latency_ms``; ``down`` closes every ``/api`` connection unanswered;
    ``token_rejected`` answers every call 401 whatever the token.

    Webhooks: each update is delivered ``duplicate_delivery`` times; each delivery waits
    ``delivery_delay_ms`` before it is sent; the next ``delivery_lost`` deliveries are never sent; the
    next ``wrong_signature`` are signed with the wrong key; the next ``stale_request_date_count`` carry
    a ``request_date`` ``stale_request_date_age_s`` seconds in the past.
    """

    server_error_count: int = 0
    server_error_status: int = 502
    latency_ms: int = 0
    down: bool = False
    token_rejected: bool = False
    duplicate_delivery: int = 1
    delivery_delay_ms: int = 0
    delivery_lost: int = 0
    wrong_signature: int = 0
    stale_request_date_count: int = 0
    stale_request_date_age_s: int = 0


@dataclass(frozen=True)
class AttemptFaults:
    """What the faults do to one delivery attempt (taken, and counted down, when it is sent)."""

    lost: bool
    wrong_signature: bool
    age_s: int


def take_attempt_faults(faults: Faults) -> AttemptFaults:
    """Consume one delivery's share of the counted delivery faults (call under the state's lock)."""
    lost = faults.delivery_lost > 0
    wrong = not lost and faults.wrong_signature > 0
    stale = not lost and faults.stale_request_date_count > 0
    faults.delivery_lost -= lost
    faults.wrong_signature -= wrong
    faults.stale_request_date_count -= stale
    return AttemptFaults(lost, wrong, faults.stale_request_date_age_s if stale else 0)


def server_error(status: int) -> CpReply:
    """An injected 5xx: 500 as the API's own ``INTERNAL_SERVER_ERROR`` envelope, another status as the
    plain text a proxy in front of the API answers (``502 Bad Gateway``)."""
    if status == 500:
        return ApiError(500, "INTERNAL_SERVER_ERROR", "server_error fault").reply()
    return CpReply(status, f"{status} {http.HTTPStatus(status).phrase}", "server_error fault", plain=True)


def unauthorized(token: str, rejected: bool) -> CpReply:
    """401 UNAUTHORIZED, with why in the call log."""
    why = (
        "token_rejected fault"
        if rejected
        else "unknown app token"
        if token
        else "no Crypto-Pay-API-Token header"
    )
    return ApiError(401, "UNAUTHORIZED", why).reply()
