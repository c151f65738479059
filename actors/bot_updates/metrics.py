"""``cybervpn_bot_updates_total{outcome}``: updates handled, retried (each in-place retry), dead and
skipped as duplicates by the workers; ``cybervpn_telegram_webhook_total{outcome}`` is the webhook's
(:mod:`worker_app.web.telegram_webhook`)."""

from __future__ import annotations

from typing import Any

from worker_app.lazy import created_once


@created_once
def updates_total() -> Any:
    import prometheus_client as prom

    return prom.Counter(
        "cybervpn_bot_updates", "Telegram updates by outcome: handled, retried (one per in-place retry), "
        "dead, duplicate (skipped: handled already).",
        ("outcome",), registry=None,
    )  # fmt: skip
