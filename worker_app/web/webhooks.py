"""``POST /webhooks/cryptobot``: Crypto Pay's ``invoice_paid`` webhook, received the way money must be.

In order, before anything reaches an actor:

1. the body is read raw, at most ``WEBHOOK_MAX_BODY_BYTES`` (413 beyond), with a JSON content type
   (415 otherwise);
2. its ``crypto-pay-api-signature`` is checked on those raw bytes, in constant time, against the
   HMAC-SHA256 keyed with the SHA-256 of ``CRYPTOBOT_TOKEN`` (401 when missing or wrong);
3. it is parsed (400 when it is not the webhook's JSON) and its ``request_date`` must be within
   ``WEBHOOK_MAX_AGE_S`` of now (401 when stale: a replayed capture);
4. every request — valid or not — is recorded in ``webhook_logs`` with why it was refused;
5. a valid ``invoice_paid`` names a payment (its ``payload``, our payment id, or its invoice id as the
   payment's ``external_id``); an unknown one is logged and answered 200 (Crypto Pay would otherwise
   redeliver it for three days), never enqueued;
6. duplicates are dropped by invoice id: only the first valid delivery of an invoice is enqueued
   (deliveries of one invoice are serialised by an advisory lock); a later one is logged as a
   duplicate and answered 200;
7. ``process_payment_completion`` is enqueued **after** the log row commits, and the row marked
   enqueued (``attempts`` 1). If RabbitMQ refuses, the answer is 503 and Crypto Pay delivers again;
   the row stays unmarked, so the next delivery (or ``retry_failed_webhooks``) enqueues it.

Processing is idempotent anyway (:mod:`actors.payments.activation`): the dedup saves work, it is not
what makes a payment count once. The route is not in the OpenAPI document (it is Crypto Pay's
contract, not ours) and needs no bearer token: the signature is its authentication.
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import UTC, datetime
from typing import Any

import dramatiq
from flask import Flask, Response, jsonify, request
from sqlalchemy import text

from worker_app.clients.cryptobot import signature_valid
from worker_app.lazy import created_once
from worker_app.runtime import Runtime

PATH = "/webhooks/cryptobot"
SIGNATURE_HEADER = "crypto-pay-api-signature"
ACTOR = "process_payment_completion"
log = logging.getLogger(__name__)

_LOG = text(
    """
    INSERT INTO webhook_logs (source, event_type, external_id, payload, signature, is_valid, error_message)
    VALUES ('cryptobot', :event_type, :external_id, CAST(:payload AS jsonb), :signature, :valid, :error)
    RETURNING id
    """
)
_FIRST = text(
    """
    SELECT count(*) FROM webhook_logs
    WHERE source = 'cryptobot' AND external_id = :invoice AND is_valid AND attempts > 0
    """
)
_PAYMENT = text(
    """
    SELECT id FROM payments
    WHERE (CAST(:payment AS uuid) IS NOT NULL AND id = CAST(:payment AS uuid)) OR external_id = :invoice
    ORDER BY (id = CAST(:payment AS uuid)) DESC NULLS LAST LIMIT 1
    """
)


class Refused(Exception):
    """A request answered without enqueueing anything: its status and the reason logged."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def add_webhook_routes(app: Flask, runtime: Runtime, broker: dramatiq.Broker) -> None:
    settings = runtime.settings

    def cryptobot() -> tuple[Response, int]:
        raw = b""
        try:
            raw = read_body(settings.webhook_max_body_bytes)
            update = _verified(raw, settings.cryptobot_token.get_secret_value(), settings.webhook_max_age_s)
        except Refused as refused:
            _record(runtime, raw, None, refused.reason)
            _metrics().labels("refused").inc()
            return jsonify(ok=False, error=refused.reason), refused.status
        return _accept(runtime, broker, raw, update)

    app.add_url_rule(PATH, "webhook_cryptobot", cryptobot, methods=["POST"])


def read_body(limit: int, setting: str = "WEBHOOK_MAX_BODY_BYTES") -> bytes:
    """The request's raw JSON body, at most ``limit`` bytes (the setting named in a 413)."""
    if (request.content_length or 0) > limit:
        raise Refused(413, f"body over {limit} bytes ({setting})")
    raw = request.stream.read(limit + 1)
    if len(raw) > limit:
        raise Refused(413, f"body over {limit} bytes ({setting})")
    if request.mimetype != "application/json":
        raise Refused(415, f"content type {request.mimetype or 'missing'}, expected application/json")
    return raw


def _verified(raw: bytes, token: str, max_age_s: int) -> dict[str, Any]:
    """The parsed update, once its signature, shape and age are right."""
    if not signature_valid(token, raw, request.headers.get(SIGNATURE_HEADER)):
        missing = SIGNATURE_HEADER not in request.headers
        raise Refused(401, f"{SIGNATURE_HEADER} {'missing' if missing else 'does not sign this body'}")
    try:
        update = json.loads(raw)
        request_date = datetime.fromisoformat(str(update["request_date"]).replace("Z", "+00:00"))
        invoice = update["payload"]
        int(invoice["invoice_id"])
        str(update["update_type"])
    except (ValueError, KeyError, TypeError) as e:
        raise Refused(400, f"not a Crypto Pay webhook body ({type(e).__name__}: {e})") from None
    if request_date.tzinfo is None:
        request_date = request_date.replace(tzinfo=UTC)
    age_s = (datetime.now(UTC) - request_date).total_seconds()
    if abs(age_s) > max_age_s:
        raise Refused(401, f"request_date {age_s:.0f} s away from now (WEBHOOK_MAX_AGE_S={max_age_s}): stale")
    return dict(update)


def _accept(
    runtime: Runtime, broker: dramatiq.Broker, raw: bytes, update: dict[str, Any]
) -> tuple[Response, int]:
    invoice = update["payload"]
    invoice_id = str(int(invoice["invoice_id"]))
    if update["update_type"] != "invoice_paid":
        _record(runtime, raw, update, f"update_type {update['update_type']!r} ignored", valid=True)
        _metrics().labels("ignored").inc()
        return jsonify(ok=True, ignored=update["update_type"]), 200
    with runtime.database.transaction() as s:
        s.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"cryptobot:{invoice_id}"})
        payment_id = s.execute(
            _PAYMENT, {"payment": _uuid(invoice.get("payload")), "invoice": invoice_id}
        ).scalar()
        duplicate = bool(s.execute(_FIRST, {"invoice": invoice_id}).scalar())
        reason = (
            None
            if payment_id and not duplicate
            else (
                "duplicate: this invoice was enqueued already"
                if payment_id
                else "unknown invoice: no such payment"
            )
        )
        log_id = s.execute(_LOG, _log_params(raw, update, reason, valid=True)).scalar_one()
    if reason is not None:
        _metrics().labels("duplicate" if payment_id else "unknown").inc()
        log.info("cryptobot webhook for invoice %s not enqueued: %s", invoice_id, reason)
        return jsonify(ok=True, ignored=reason), 200
    try:
        broker.get_actor(ACTOR).send(str(payment_id), invoice, "cryptobot")
    except Exception as e:  # RabbitMQ down: Crypto Pay redelivers on a non-2xx; the row stays unmarked
        log.warning("cryptobot webhook for invoice %s recorded but not enqueued: %s: %s",
                    invoice_id, type(e).__name__, e)  # fmt: skip
        _metrics().labels("not_enqueued").inc()
        return jsonify(ok=False, error="recorded, not yet enqueued; deliver again"), 503
    with runtime.database.transaction() as s:
        s.execute(text("UPDATE webhook_logs SET attempts = 1 WHERE id = :id"), {"id": log_id})
    _metrics().labels("enqueued").inc()
    return jsonify(ok=True), 200


def _record(
    runtime: Runtime, raw: bytes, update: dict[str, Any] | None, reason: str | None, *, valid: bool = False
) -> None:
    with runtime.database.transaction() as s:
        s.execute(_LOG, _log_params(raw, update, reason, valid=valid))


def _log_params(
    raw: bytes, update: dict[str, Any] | None, reason: str | None, *, valid: bool
) -> dict[str, Any]:
    invoice = update.get("payload") if isinstance(update, dict) else None
    return {
        "event_type": (_text(update.get("update_type"), 64) or "none") if update is not None else "invalid",
        "external_id": _text(invoice.get("invoice_id"), 64) if isinstance(invoice, dict) else None,
        "payload": _jsonb(update, raw),
        "signature": _text(request.headers.get(SIGNATURE_HEADER), 256) or None,
        "valid": valid,
        "error": _text(reason, 2000),
    }


def _text(value: Any, limit: int) -> str | None:
    """``value`` as PostgreSQL text can hold it: valid UTF-8 (a lone surrogate becomes ``?``), no NUL
    character, at most ``limit`` characters."""
    if value is None:
        return None
    return str(value).replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")[:limit]


def _jsonb(update: dict[str, Any] | None, raw: bytes) -> str:
    """The body as ``jsonb`` can hold it: the parsed update, or — when it did not parse, or holds
    what jsonb refuses (NaN, a NUL character) — ``{"raw": <its first 2 KiB>}``."""
    if update is not None:
        try:
            text_ = json.dumps(update, ensure_ascii=False, allow_nan=False)
        except (ValueError, TypeError):
            text_ = ""
        if text_ and "\\u0000" not in text_ and text_ == _text(text_, len(text_)):
            return text_
    return json.dumps({"raw": _text(raw[:2048].decode("utf-8", "replace"), 2048)}, ensure_ascii=False)


def _uuid(value: Any) -> str | None:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        return None


@created_once
def _metrics() -> Any:
    import prometheus_client as prom

    return prom.Counter(
        "cybervpn_webhooks", "Crypto Pay webhook requests by outcome: enqueued, duplicate, unknown, ignored, "
        "refused (bad signature, stale, malformed, too big, wrong type), not_enqueued (RabbitMQ refused).",
        ("outcome",), registry=None,
    )  # fmt: skip
