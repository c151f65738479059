"""``POST /webhooks/telegram``: Telegram's updates into the ordered ``bot_updates`` queues.

Telegram delivers each update as one POST and retries it (with growing pauses) until it gets a 2xx,
so the answer is 200 only once the update is safely in RabbitMQ. In order:

1. ``TELEGRAM_WEBHOOK_SECRET`` unset → 503 (nothing can be authenticated; Telegram keeps the update);
2. ``X-Telegram-Bot-Api-Secret-Token`` compared with it in constant time → 401 when missing or wrong;
3. the body: at most ``TELEGRAM_WEBHOOK_MAX_BODY_BYTES`` (413), ``application/json`` (415), a JSON
   object with an integer ``update_id`` (400 otherwise: the same bytes would fail again, and Telegram
   stops retrying a 4xx);
4. ``handle_bot_update`` is published with the trace id ``tg-<update_id>`` and the answer waits for
   RabbitMQ's publisher confirm: 200 ``{"ok": true}``; RabbitMQ unreachable or not confirming within
   ``API_PUBLISH_TIMEOUT_S`` → 503 (Telegram delivers again, and a copy that did get through is
   skipped by the worker's de-duplication by ``update_id``).

The broker routes the update to its chat's shard (:mod:`worker_app.ordered`). Nothing else runs on
the request: no database, no Redis. In the OpenAPI document (security ``telegram_secret``); no bearer
token. Metrics: ``cybervpn_telegram_webhook_total{outcome}`` (enqueued, refused, not_enqueued) and
``cybervpn_telegram_webhook_seconds`` (request handling time, publish confirm included).
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from typing import Any

import dramatiq
from flask import Response, jsonify, request
from flask_openapi3.openapi import OpenAPI
from pydantic import BaseModel

from worker_app.lazy import created_once
from worker_app.runtime import Runtime
from worker_app.web.webhooks import Refused, read_body

PATH = "/webhooks/telegram"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
ACTOR = "handle_bot_update"
SECURITY: list[dict[str, list[Any]]] = [{"telegram_secret": []}]
SECURITY_SCHEME = {"type": "apiKey", "in": "header", "name": SECRET_HEADER}
log = logging.getLogger(__name__)

_REQUEST_BODY = {
    "required": True,
    "description": "A Telegram Update (https://core.telegram.org/bots/api#update), as Telegram sends it.",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["update_id"],
                "properties": {"update_id": {"type": "integer"}},
                "additionalProperties": True,
            }
        }
    },
}


class WebhookAck(BaseModel):
    """The answer to Telegram: ``ok``, and on a refusal the ``error`` naming why."""

    ok: bool
    error: str | None = None


def add_telegram_webhook_route(app: OpenAPI, runtime: Runtime, broker: dramatiq.Broker) -> None:
    """Register ``POST /webhooks/telegram`` (and its security scheme) on ``app``."""
    settings = runtime.settings
    app.security_schemes = {**(app.security_schemes or {}), "telegram_secret": SECURITY_SCHEME}

    def telegram_webhook() -> tuple[Response, int]:
        """Telegram's webhook: one update, answered 200 once RabbitMQ confirmed it (503 otherwise,
        and Telegram delivers it again)."""
        started = time.perf_counter()
        try:
            secret = settings.telegram_webhook_secret
            if secret is None:
                raise Refused(503, "TELEGRAM_WEBHOOK_SECRET is not set: updates cannot be authenticated")
            given = request.headers.get(SECRET_HEADER)
            if given is None or not hmac.compare_digest(given.encode(), secret.get_secret_value().encode()):
                raise Refused(401, f"{SECRET_HEADER} {'missing' if given is None else 'wrong'}")
            update = _update(settings.telegram_webhook_max_body_bytes)
        except Refused as refused:
            _metrics().total.labels("refused").inc()
            return jsonify(ok=False, error=refused.reason), refused.status
        update_id = update["update_id"]
        try:
            broker.get_actor(ACTOR).send_with_options(args=(update,), trace_id=f"tg-{update_id}")
        except Exception as e:  # RabbitMQ down or not confirming: Telegram delivers the update again
            log.warning("telegram update %s not enqueued: %s: %s", update_id, type(e).__name__, e)
            _metrics().total.labels("not_enqueued").inc()
            return jsonify(ok=False, error="not enqueued; deliver again"), 503
        _metrics().total.labels("enqueued").inc()
        _metrics().seconds.observe(time.perf_counter() - started)
        return jsonify(ok=True), 200

    app.post(
        PATH,
        responses={200: WebhookAck, 400: WebhookAck, 401: WebhookAck, 413: WebhookAck,
                   415: WebhookAck, 503: WebhookAck},
        security=SECURITY,
        openapi_extensions={"requestBody": _REQUEST_BODY},
    )(telegram_webhook)  # fmt: skip


def _update(limit: int) -> dict[str, Any]:
    """The request's update, once its size, type and shape are right."""
    raw = read_body(limit, "TELEGRAM_WEBHOOK_MAX_BODY_BYTES")
    try:
        update = json.loads(raw)
    except (ValueError, RecursionError) as e:
        raise Refused(400, f"body is not JSON ({type(e).__name__})") from None
    if not isinstance(update, dict):
        raise Refused(400, f"an update is a JSON object, not {type(update).__name__}")
    update_id = update.get("update_id")
    if not isinstance(update_id, int) or isinstance(update_id, bool) or not 0 <= update_id < 2**63:
        raise Refused(400, "update_id must be a non-negative integer")
    return update


class _Metrics:
    def __init__(self) -> None:
        import prometheus_client as prom

        self.total = prom.Counter(
            "cybervpn_telegram_webhook", "Telegram webhook deliveries by outcome: enqueued, refused "
            "(401/413/415/400/503 unconfigured), not_enqueued (RabbitMQ: 503).",
            ("outcome",), registry=None,
        )  # fmt: skip
        self.seconds = prom.Histogram(
            "cybervpn_telegram_webhook_seconds", "Time to answer an enqueued Telegram update "
            "(publisher confirm included).",
            buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5), registry=None,
        )  # fmt: skip


@created_once
def _metrics() -> _Metrics:
    return _Metrics()
